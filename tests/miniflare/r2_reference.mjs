// The Miniflare side of the R2 conformance comparison: runs tests/workers/r2_conformance.js
// with a real (in-memory) Miniflare R2 bucket bound as B and prints its transcript as JSON.
// Usage: node tests/miniflare/r2_reference.mjs [worker.js]
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createRequire } from "node:module";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const require = createRequire(path.join(root, "workerd", "package.json"));
const { Miniflare } = await import(pathToFileURL(require.resolve("miniflare")).href);

const script = path.resolve(process.argv[2] ?? path.join(root, "tests", "workers", "r2_conformance.js"));
const mf = new Miniflare({
  modules: true,
  scriptPath: script,
  modulesRoot: path.dirname(script),
  compatibilityDate: "2025-11-17",
  r2Buckets: { B: "conformance" },
  r2Persist: false,
});
try {
  const response = await mf.dispatchFetch("http://localhost/");
  process.stdout.write(await response.text());
} finally {
  await mf.dispose();
}
