// The Miniflare side of the Workflows conformance comparison: runs
// tests/workers/workflow_conformance.js with Miniflare's simulated Workflows
// (binding FLOW, class Flow) and prints its transcript as JSON on stdout.
// Usage: node tests/miniflare/workflow_reference.mjs [worker.js]
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createRequire } from "node:module";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const require = createRequire(path.join(root, "workerd", "package.json"));
const { Miniflare } = await import(pathToFileURL(require.resolve("miniflare")).href);

const script = path.resolve(process.argv[2] ??
  path.join(root, "tests", "workers", "workflow_conformance.js"));
const mf = new Miniflare({
  modules: true,
  scriptPath: script,
  modulesRoot: path.dirname(script),
  compatibilityDate: "2025-11-17",
  workflows: { FLOW: { name: "conformance", className: "Flow" } },
  workflowsPersist: false,
});
try {
  const response = await mf.dispatchFetch("http://localhost/");
  process.stdout.write(await response.text());
} finally {
  await mf.dispose();
}
