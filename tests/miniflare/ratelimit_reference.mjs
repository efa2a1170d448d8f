// The Miniflare side of the rate limiting comparison: runs
// tests/workers/ratelimit_conformance.js with Miniflare's `ratelimits` (RL: limit 3,
// period 60) and prints its transcript as JSON on stdout.
// Usage: node tests/miniflare/ratelimit_reference.mjs
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createRequire } from "node:module";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const require = createRequire(path.join(root, "workerd", "package.json"));
const { Miniflare } = await import(pathToFileURL(require.resolve("miniflare")).href);

const script = path.join(root, "tests", "workers", "ratelimit_conformance.js");
const mf = new Miniflare({
  modules: true,
  scriptPath: script,
  modulesRoot: path.dirname(script),
  compatibilityDate: "2025-06-01",
  ratelimits: { RL: { simple: { limit: 3, period: 60 } } },
});
try {
  const response = await mf.dispatchFetch("http://localhost/");
  process.stdout.write(await response.text());
} finally {
  await mf.dispose();
}
