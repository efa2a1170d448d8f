// The Miniflare side of the Dynamic Workflows comparison: the dispatcher of
// tests/fixtures/dynamic_workflows (bundled by the pinned wrangler, with the published
// @cloudflare/dynamic-workflows) under Miniflare's workerLoaders and Workflows, driven
// by the fixture's calls.json; prints the transcript as JSON on stdout.
// Usage: node tests/miniflare/dynamic_workflows_reference.mjs <bundled main module>
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createRequire } from "node:module";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const require = createRequire(path.join(root, "workerd", "package.json"));
const { Miniflare } = await import(pathToFileURL(require.resolve("miniflare")).href);

const script = path.resolve(process.argv[2]);
const calls = JSON.parse(fs.readFileSync(
  path.join(root, "tests", "fixtures", "dynamic_workflows", "calls.json"), "utf8"));
const mf = new Miniflare({
  modules: true,
  scriptPath: script,
  modulesRoot: path.dirname(script),
  compatibilityDate: "2026-01-01",
  workerLoaders: { LOADER: {} },
  workflows: { WORKFLOWS: { name: "dynamic-workflow", className: "DynamicWorkflow" } },
  workflowsPersist: false,
});

async function once(call) {
  const init = { headers: { "x-tenant-id": call.tenant } };
  if (call.body !== undefined) {
    init.method = "POST";
    init.body = JSON.stringify(call.body);
  }
  const r = await mf.dispatchFetch("http://localhost" + call.path, init);
  const text = await r.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  return { name: call.name, status: r.status, body };
}

const transcript = [];
try {
  for (const call of calls) {
    let entry = await once(call);
    const deadline = Date.now() + 60000;
    while (call.until && entry.body.status !== call.until && Date.now() < deadline &&
           !["errored", "terminated"].includes(entry.body.status)) {
      await new Promise((r) => setTimeout(r, 200));
      entry = await once(call);
    }
    transcript.push(entry);
  }
  process.stdout.write(JSON.stringify(transcript));
} finally {
  await mf.dispose();
}
