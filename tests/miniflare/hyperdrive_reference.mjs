// The Miniflare side of the Hyperdrive driver comparison: a project of
// tests/fixtures/hyperdrive_{postgresjs,pg} (bundled by the pinned wrangler) under
// Miniflare, its HD binding naming the origin's real connection string (Miniflare's
// Hyperdrive is a local proxy straight to it: no pooler). Prints {path: answer} as JSON
// on stdout.
// Usage: node tests/miniflare/hyperdrive_reference.mjs <bundled main module> <origin url> <tag>
//        <path>... (/run, /object/run, /child/run)
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createRequire } from "node:module";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const require = createRequire(path.join(root, "workerd", "package.json"));
const { Miniflare } = await import(pathToFileURL(require.resolve("miniflare")).href);

const [scriptArg, origin, tag, ...places] = process.argv.slice(2);
const script = path.resolve(scriptArg);
const mf = new Miniflare({
  modules: true,
  scriptPath: script,
  modulesRoot: path.dirname(script),
  compatibilityDate: "2025-06-01",
  compatibilityFlags: ["nodejs_compat"],
  hyperdrives: { HD: origin },
  modulesRules: [{ type: "Text", include: ["**/*.txt"] }],
  workerLoaders: { LOADER: {} },
  durableObjects: { DB_OBJECT: { className: "DbObject", useSQLite: true } },
  durableObjectsPersist: false,
});
const answers = {};
try {
  for (const place of places) {
    const r = await mf.dispatchFetch(`http://localhost${place}?tag=${tag}-${place}`);
    const text = await r.text();
    try { answers[place] = JSON.parse(text); } catch { answers[place] = { status: r.status, text }; }
  }
  process.stdout.write(JSON.stringify(answers));
} finally {
  await mf.dispose();
}
