// The Miniflare side of the D1 conformance comparison: runs
// tests/workers/d1_conformance.js with a real (in-memory) Miniflare D1 database
// bound as DB and prints its transcript as JSON on stdout.
// Usage: node tests/miniflare/d1_reference.mjs [worker.js]
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createRequire } from "node:module";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const require = createRequire(path.join(root, "workerd", "package.json"));
const { Miniflare } = await import(pathToFileURL(require.resolve("miniflare")).href);

const script = path.resolve(process.argv[2] ?? path.join(root, "tests", "workers", "d1_conformance.js"));
const mf = new Miniflare({
  modules: true,
  scriptPath: script,
  modulesRoot: path.dirname(script),
  compatibilityDate: "2025-11-17",
  d1Databases: { DB: "conformance" },
  d1Persist: false,
});
try {
  const response = await mf.dispatchFetch("http://localhost/");
  process.stdout.write(await response.text());
} finally {
  await mf.dispose();
}
