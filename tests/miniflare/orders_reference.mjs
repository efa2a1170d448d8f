// The Miniflare side of the examples/orders comparison (tests/integration/
// test_orders_project.py): the same project under Miniflare's queues, Workflows,
// KV and worker loaders, driven through the same scenario; prints its outcome as JSON.
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createRequire } from "node:module";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const require = createRequire(path.join(root, "workerd", "package.json"));
const { Miniflare } = await import(pathToFileURL(require.resolve("miniflare")).href);

const project = path.join(root, "examples", "orders");
const script = path.join(project, "src", "index.js");
const mf = new Miniflare({
  modules: true,
  scriptPath: script,
  modulesRoot: path.dirname(script),
  compatibilityDate: "2025-11-17",
  queueProducers: { ORDERS: { queueName: "orders" } },
  queueConsumers: {
    orders: { maxBatchSize: 10, maxBatchTimeout: 1, maxRetries: 1, retryDelay: 0,
              deadLetterQueue: "orders-dlq" },
    "orders-dlq": { maxBatchSize: 10, maxBatchTimeout: 1 },
  },
  kvNamespaces: { DEAD: "orders-dead" },
  kvPersist: false,
  workflows: { FLOW: { name: "fulfil", className: "Fulfil" } },
  workflowsPersist: false,
  workerLoaders: { LOADER: {} },
});

const call = async (method, p, body) => {
  const r = await mf.dispatchFetch(`http://localhost${p}`, {
    method, body: body === undefined ? undefined : JSON.stringify(body) });
  return await r.json();
};
const until = async (what, ok) => {
  const deadline = Date.now() + 60000;
  for (;;) {
    const got = await what();
    if (ok(got) || Date.now() > deadline) return got;
    await new Promise((r) => setTimeout(r, 200));
  }
};

try {
  const orders = [{ id: "a", amount: 10, rule: "double" }, { id: "b", amount: 7, rule: "triple" },
                  { id: "c", amount: 1, rule: "double", bad: true }];
  for (const o of orders) await call("POST", "/order", o);
  const out = {};
  for (const id of ["a", "b"]) {
    await until(() => call("GET", `/status?id=${id}`), (s) => s.status !== "unknown");
    await call("POST", `/approve?id=${id}`);
  }
  for (const id of ["a", "b"]) {
    out[id] = await until(() => call("GET", `/status?id=${id}`), (s) => s.status === "complete");
  }
  out.dead = await until(() => call("GET", "/dead"), (d) => d.length === 1);
  process.stdout.write(JSON.stringify(out));
} finally {
  await mf.dispose();
}
