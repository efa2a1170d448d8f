// One Dynamic Worker Loader conformance run: the same module runs under
// Miniflare (tests/miniflare/loader_reference.mjs, LOADER = workerd's own
// worker loader) and on WDL (tests/integration/test_loaders_e2e.py, deployed
// with `worker_loaders = [{binding = "LOADER"}]`). GET / answers a transcript
// of {name, ok, value | error{name, message}}, one entry per call.
//
// Also the parent of the e2e tests: GET /child?id=..&tag=.. loads a child
// under that id that answers the tag, GET /out?mode=default|null&url=.. has a
// child fetch a URL, GET /kv?key=.. has a child read the parent's KV.

const CHILD = `
import { WorkerEntrypoint } from "cloudflare:workers";
let calls = 0;
export class Rpc extends WorkerEntrypoint {
  add(a, b) { return a + b; }
  count() { calls += 1; return calls; }
  props() { return this.ctx.props ?? null; }
  envKeys() { return Object.keys(this.env).sort(); }
  plain() { return { PLAIN: this.env.PLAIN, OBJ: this.env.OBJ }; }
  async kvGet(key) { return await this.env.KV.get(key); }
  async kvPut(key, value) { await this.env.KV.put(key, value); return "put"; }
  kvType() { return Object.prototype.toString.call(this.env.KV); }
  boom() { throw new RangeError("child boom"); }
  async fetchOut(url) { const r = await fetch(url); return r.status + " " + await r.text(); }
}
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/throw") throw new Error("child fetch threw");
    return new Response("child " + request.method + " " + url.pathname + " tag=" + env.TAG, {
      headers: { "x-child": "1" } });
  },
};
`;

const NO_DEFAULT = `
import { WorkerEntrypoint } from "cloudflare:workers";
export class Only extends WorkerEntrypoint { hi() { return "hi"; } }
`;

function code(extra = {}) {
  return { compatibilityDate: "2025-06-01", mainModule: "child.js",
           modules: { "child.js": CHILD }, ...extra };
}

function errorOf(e) {
  // workerd's internal errors carry a random reference: compare without it.
  const message = String(e && e.message || e).replace(/^(internal error); reference = \w+$/, "$1");
  return { name: e && e.name, message };
}

async function run(env) {
  const transcript = [];
  async function step(name, fn) {
    try {
      transcript.push({ name, ok: true, value: await fn() });
    } catch (e) {
      transcript.push({ name, ok: false, error: errorOf(e) });
    }
  }
  const tag = crypto.randomUUID().slice(0, 8);  // fresh ids per run: nothing cached before
  let callbacks = 0;
  const basic = () => { callbacks += 1; return code({ env: { TAG: "basic", PLAIN: 42,
    OBJ: { nested: [1, "two"] } } }); };

  await step("get fetch", async () => {
    const r = await env.LOADER.get(`basic-${tag}`, basic).getEntrypoint()
      .fetch("https://child.example/path?q=1", { method: "POST", body: "x" });
    return { status: r.status, text: await r.text(), header: r.headers.get("x-child") };
  });
  await step("get rpc", () => env.LOADER.get(`basic-${tag}`, basic).getEntrypoint("Rpc").add(2, 3));
  await step("callback runs once per id", async () => {
    await env.LOADER.get(`basic-${tag}`, basic).getEntrypoint("Rpc").add(1, 1);
    return callbacks;
  });
  await step("isolate kept per id", async () => {
    const a = await env.LOADER.get(`basic-${tag}`, basic).getEntrypoint("Rpc").count();
    const b = await env.LOADER.get(`basic-${tag}`, basic).getEntrypoint("Rpc").count();
    return [a, b];
  });
  await step("async callback", () => env.LOADER.get(`async-${tag}`,
    async () => code({ env: { TAG: "async" } })).getEntrypoint("Rpc").add(4, 5));
  await step("env plain values", () => env.LOADER.get(`basic-${tag}`, basic)
    .getEntrypoint("Rpc").plain());
  await step("env keys", () => env.LOADER.get(`basic-${tag}`, basic).getEntrypoint("Rpc").envKeys());
  await step("entrypoint props", () => env.LOADER.get(`basic-${tag}`, basic)
    .getEntrypoint("Rpc", { props: { who: "parent", n: 1 } }).props());
  await step("rpc throws", () => env.LOADER.get(`basic-${tag}`, basic).getEntrypoint("Rpc").boom());
  await step("child fetch throws", async () => {
    const r = await env.LOADER.get(`basic-${tag}`, basic).getEntrypoint().fetch("https://c/throw");
    return { status: r.status };
  });

  const withKv = () => code({ env: { TAG: "kv", KV: env.KV } });
  await step("kv passthrough: child reads the parent's write", async () => {
    await env.KV.put(`k-${tag}`, "from parent");
    return env.LOADER.get(`kv-${tag}`, withKv).getEntrypoint("Rpc").kvGet(`k-${tag}`);
  });
  await step("kv passthrough: parent reads the child's write", async () => {
    await env.LOADER.get(`kv-${tag}`, withKv).getEntrypoint("Rpc").kvPut(`c-${tag}`, "from child");
    return env.KV.get(`c-${tag}`);
  });

  await step("globalOutbound null refuses fetch", () => env.LOADER.get(`null-${tag}`,
    () => code({ globalOutbound: null })).getEntrypoint("Rpc").fetchOut("https://example.com/"));

  await step("load rpc", () => env.LOADER.load(code()).getEntrypoint("Rpc").add(7, 8));
  await step("load fetch", async () => {
    const r = await env.LOADER.load(code({ env: { TAG: "loaded" } })).getEntrypoint()
      .fetch("https://c/loaded");
    return r.text();
  });
  await step("load keeps one isolate per stub", async () => {
    const stub = env.LOADER.load(code());
    return [await stub.getEntrypoint("Rpc").count(), await stub.getEntrypoint("Rpc").count()];
  });

  await step("callback throws", () => env.LOADER.get(`cb-${tag}`, () => {
    throw new Error("no code today"); }).getEntrypoint("Rpc").add(1, 2));
  await step("same id after the callback threw", () => env.LOADER.get(`cb-${tag}`, () => code())
    .getEntrypoint("Rpc").add(1, 2));
  await step("syntax error", () => env.LOADER.get(`syntax-${tag}`, () => ({
    compatibilityDate: "2025-06-01", mainModule: "child.js",
    modules: { "child.js": "export default {" } })).getEntrypoint("Rpc").add(1, 2));
  await step("same id after a failed start", () => env.LOADER.get(`syntax-${tag}`, () => code())
    .getEntrypoint("Rpc").add(1, 2));

  await step("unknown compatibility flag", () => env.LOADER.get(`flag-${tag}`, () => code({
    compatibilityFlags: ["no_such_flag_xyz"] })).getEntrypoint("Rpc").add(1, 2));
  await step("experimental compatibility flag", () => env.LOADER.get(`exp-${tag}`, () => code({
    compatibilityFlags: ["experimental"] })).getEntrypoint("Rpc").add(1, 2));
  await step("nodejs_compat flag", () => env.LOADER.get(`node-${tag}`, () => code({
    compatibilityFlags: ["nodejs_compat"] })).getEntrypoint("Rpc").add(2, 2));
  await step("missing main module", () => env.LOADER.get(`main-${tag}`, () => code({
    mainModule: "nope.js" })).getEntrypoint("Rpc").add(1, 2));
  await step("unknown entrypoint", () => env.LOADER.get(`basic-${tag}`, basic)
    .getEntrypoint("Nope").add(1, 2));
  await step("unknown method", () => env.LOADER.get(`basic-${tag}`, basic)
    .getEntrypoint("Rpc").nope());
  await step("no default export", async () => {
    const r = await env.LOADER.get(`nodef-${tag}`, () => ({ compatibilityDate: "2025-06-01",
      mainModule: "only.js", modules: { "only.js": NO_DEFAULT } })).getEntrypoint().fetch("https://c/");
    return r.status;
  });
  await step("no default export: named entrypoint", () => env.LOADER.get(`nodef-${tag}`, () => ({
    compatibilityDate: "2025-06-01", mainModule: "only.js", modules: { "only.js": NO_DEFAULT } }))
    .getEntrypoint("Only").hi());
  await step("text and json modules", () => env.LOADER.get(`mods-${tag}`, () => ({
    compatibilityDate: "2025-06-01", mainModule: "m.js",
    modules: { "m.js": "import t from './t.txt'; import j from './j.json';\n" +
      "import { WorkerEntrypoint } from 'cloudflare:workers';\n" +
      "export class M extends WorkerEntrypoint { both() { return [t, j]; } }\n" +
      "export default { fetch() { return new Response('m'); } };",
      "t.txt": { text: "some text" }, "j.json": { json: { a: 1 } } } })).getEntrypoint("M").both());
  return transcript;
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const q = url.searchParams;
    if (url.pathname === "/child") {
      // Namespace-scoped ids: the same id string in two namespaces.
      const stub = env.LOADER.get(q.get("id"), () => code({ env: { TAG: q.get("tag") } }));
      return stub.getEntrypoint().fetch("https://c/scoped");
    }
    if (url.pathname === "/out") {
      const extra = q.get("mode") === "null" ? { globalOutbound: null }
        : q.get("mode") === "service" ? { globalOutbound: env.SVC } : {};
      const id = `out-${q.get("mode")}`;
      try {
        return new Response("reached " + await env.LOADER.get(id, () => code(extra))
          .getEntrypoint("Rpc").fetchOut(q.get("url")));
      } catch (e) {
        return new Response("refused: " + e.message);
      }
    }
    if (url.pathname === "/outfetch") {
      // A child's fetch() made while handling a fetch from the parent: counted against the
      // parent request's subrequest budget.
      const stub = env.LOADER.get("outfetch", () => code({ modules: { "child.js": `
        export default { async fetch(req) {
          const target = new URL(req.url).searchParams.get("url");
          const n = Number(new URL(req.url).searchParams.get("n"));
          let ok = 0;
          try { for (let i = 0; i < n; i++) { await (await fetch(target)).text(); ok++; } }
          catch (e) { return Response.json({ ok, error: e.message }); }
          return Response.json({ ok, error: "" });
        } };` } }));
      return stub.getEntrypoint().fetch("https://c/?" + q.toString());
    }
    if (url.pathname === "/kv") {
      const stub = env.LOADER.get("kv-reader", () => code({ env: { KV: env.KV } }));
      return Response.json({ child: await stub.getEntrypoint("Rpc").kvGet(q.get("key")),
                             parent: await env.KV.get(q.get("key")) });
    }
    if (url.pathname === "/forge") {
      const out = {};
      for (const [name, extra] of [
        ["reserved env", { env: { __WDL_BINDINGS: { KV: "kv" }, KV: { namespace: q.get("ns"),
                                                                        resource: "kv" } } }],
        ["plain object as KV", { env: { KV: { namespace: q.get("ns"), resource: "kv" } } }],
        ["reserved module", { modules: { "child.js": CHILD, "__wdl/shim.js": "export {}" } }],
        ["reserved env, other case", { env: { __wdl_bindings: { KV: "kv" } } }],
        ["reserved module, other case", { modules: { "child.js": CHILD,
                                                     "./__WDL/shim.js": "export {}" } }],
        ["experimental flag", { compatibilityFlags: ["js_rpc"] }],
        ["python flag", { compatibilityFlags: ["python_workers"] }],
        ["allowExperimental", { allowExperimental: true }],
        ["fetcher outbound", { globalOutbound: { fetch() {} } }],
      ]) {
        try {
          const stub = env.LOADER.get(`forge-${name}`, () => code(extra));
          out[name] = { ok: true, value: await stub.getEntrypoint("Rpc").kvType() };
          out[name].read = await stub.getEntrypoint("Rpc").kvGet("secret").catch((e) => "error: " + e.message);
        } catch (e) {
          out[name] = { ok: false, error: errorOf(e) };
        }
      }
      return Response.json(out);
    }
    if (url.pathname === "/spin") {
      // A child that never yields: the watchdog must blame (and quarantine) its parent.
      return env.LOADER.get("spin", () => code({ modules: { "child.js":
        "export default { async fetch() { while (true) {} } };" } })).getEntrypoint()
        .fetch("https://c/");
    }
    if (url.pathname === "/put") {
      await env.KV.put(q.get("key"), q.get("value"));
      return new Response("ok");
    }
    return Response.json(await run(env));
  },
};
