// The Miniflare side of the Dynamic Worker Loader comparison: runs
// tests/workers/loader_conformance.js with Miniflare's `workerLoaders` (workerd's
// own worker loader) bound as LOADER and an in-memory KV namespace as KV, and
// prints its transcript as JSON on stdout.
// Usage: node tests/miniflare/loader_reference.mjs [worker.js]
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createRequire } from "node:module";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const require = createRequire(path.join(root, "workerd", "package.json"));
const { Miniflare } = await import(pathToFileURL(require.resolve("miniflare")).href);

const script = path.resolve(process.argv[2] ?? path.join(root, "tests", "workers", "loader_conformance.js"));
const mf = new Miniflare({
  modules: true,
  scriptPath: script,
  modulesRoot: path.dirname(script),
  compatibilityDate: "2025-06-01",
  kvNamespaces: { KV: "conformance" },
  kvPersist: false,
  workerLoaders: { LOADER: {} },
});
try {
  const response = await mf.dispatchFetch("http://localhost/");
  process.stdout.write(await response.text());
} finally {
  await mf.dispose();
}
