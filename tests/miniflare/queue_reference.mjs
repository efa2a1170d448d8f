// The Miniflare side of the Queues conformance comparison: runs
// tests/workers/queue_conformance.js with Miniflare's queue broker (producer OUT to `out`,
// whose consumer only acks: Miniflare checks the limits only for a consumed queue; PROBE to `probe`: max_retries 1, dead-letter queue `probe-dlq`), prints
// the producer transcript as JSON and waits until the sink (argv[2], the test's server) has
// seen `argv[3]` deliveries.
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createRequire } from "node:module";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const require = createRequire(path.join(root, "workerd", "package.json"));
const { Miniflare } = await import(pathToFileURL(require.resolve("miniflare")).href);

const script = path.join(root, "tests", "workers", "queue_conformance.js");
const [sink, expected] = [process.argv[2], Number(process.argv[3])];
const mf = new Miniflare({
  modules: true,
  scriptPath: script,
  modulesRoot: path.dirname(script),
  compatibilityDate: "2025-06-01",
  bindings: { SINK: sink },
  queueProducers: { OUT: { queueName: "out" }, PROBE: { queueName: "probe" },
                    PROBE2: { queueName: "probe2" } },
  queueConsumers: {
    out: { maxBatchSize: 100, maxBatchTimeout: 1 },
    probe: { maxBatchSize: 10, maxBatchTimeout: 1, maxRetries: 1, deadLetterQueue: "probe-dlq" },
    "probe-dlq": { maxBatchSize: 10, maxBatchTimeout: 1 },
    probe2: { maxBatchSize: 10, maxBatchTimeout: 1, maxRetries: 3 },
  },
});
try {
  const response = await mf.dispatchFetch("http://localhost/");
  process.stdout.write(await response.text());
  // Until `expected` deliveries arrived and then nothing more for 3 s (a redelivery or a
  // dead-letter delivery may still come), at most 60 s.
  const deadline = Date.now() + 60000;
  let last = -1;
  let since = Date.now();
  while (Date.now() < deadline) {
    const n = Number(await (await fetch(sink + "?count=1")).text());
    if (n !== last) [last, since] = [n, Date.now()];
    if (n >= expected && Date.now() - since >= 3000) break;
    await new Promise((r) => setTimeout(r, 200));
  }
} finally {
  await mf.dispose();
}
