// The Miniflare side of the Durable Objects conformance comparison: runs
// tests/workers/do_conformance.js with a SQLite-backed Durable Object class bound
// as OBJ and prints its transcript as JSON on stdout.
// Usage: node tests/miniflare/do_reference.mjs [worker.js]
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createRequire } from "node:module";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const require = createRequire(path.join(root, "workerd", "package.json"));
const { Miniflare } = await import(pathToFileURL(require.resolve("miniflare")).href);

const script = path.resolve(process.argv[2] ?? path.join(root, "tests", "workers", "do_conformance.js"));
const mf = new Miniflare({
  modules: true,
  scriptPath: script,
  modulesRoot: path.dirname(script),
  compatibilityDate: "2025-11-17",
  durableObjects: { OBJ: { className: "Conformance", useSQLite: true } },
  durableObjectsPersist: false,
});
try {
  const response = await mf.dispatchFetch("http://localhost/");
  process.stdout.write(await response.text());
} finally {
  await mf.dispose();
}
