// The WDL Durable Object host (services/objects/): one workerd process whose
// platform Durable Object class, WdlObjectHost, runs each tenant object as a
// facet (ctx.facets, SQLite per facet on localDisk). Loaded workers cannot have
// Durable Object namespaces of their own; a facet is the way stock workerd runs
// a class of a dynamically loaded worker with its own storage.
//
// One host object per tenant object, named `<namespace>/<script>/<class>/<id>`;
// its facet "app" is the tenant's class, with the tenant's id as ctx.id.
// Facets cannot set alarms: the tenant's ctx.storage.setAlarm/getAlarm/deleteAlarm
// are routed (WdlAlarms) to the host object, which sets its own alarm and calls
// the facet's alarm() when it fires; a throw makes workerd retry the host's
// alarm (at least once, with backoff).
import { DurableObject, WorkerEntrypoint } from "cloudflare:workers";
import { idTag } from "./ids.js";
import { RPC, decodeValue, encodeValue } from "./values.js";
import SHIM from "./shim_sources.js";
import { internalHeaders, internalRefusal } from "./internal.js";
import { egressRefusal } from "./egress.js";
import { serveConnect } from "./sockets.js";
import { enter } from "./careful.js";

// The binding kinds objects serve (generated from eventlog/bindings/: in_objects).
export * from "./binding_entrypoints.js";
// Self stubs (`exports.X({props})`) of a Durable Object's code (gateway/self.js).
export { WdlSelf, WdlSelfBinding } from "./self.js";
import { selfExports, setSelfLoader } from "./self.js";
import { ENTRYPOINTS, INFO } from "./binding_kinds.js";

// Binding kinds served inside objects -> the entrypoint (ctx.exports) that serves it.

// The facet's ctx.storage as the tenant sees it: alarms go to the host (facets
// cannot set them), and every write is fenced: it runs in one SQLite transaction
// with a read of the object's `__wdl_fence` row, which must still hold the lease
// generation this host serves under. A new owner raises that row (in the same
// database file) before it serves, so a stale owner's next write fails: either its
// read sees the new generation, or, if it read before the bump, SQLite refuses its
// write transaction (SQLITE_BUSY_SNAPSHOT: WAL, native unix VFS locks across
// processes; docs/durable-objects.md).
const CTX_PATCH = `
import { env } from "cloudflare:workers";
const alarms = env.__WDL_ALARMS;
delete env.__WDL_ALARMS;
const FENCE = "__wdl_fence";
function num(t) { return t instanceof Date ? t.getTime() : Number(t); }
export function patch(ctx) {
  const id = ctx.id.toString();
  const s = ctx.storage;
  const sql = s.sql;
  const exec = sql.exec.bind(sql);
  const sync = s.transactionSync.bind(s);
  let serving = null;  // the lease generation this host serves under (set by the host)
  const current = () => {
    exec("CREATE TABLE IF NOT EXISTS " + FENCE + " (gen INTEGER NOT NULL)");
    const rows = exec("SELECT gen FROM " + FENCE).toArray();
    return rows.length ? rows[0].gen : 0;
  };
  const check = () => {
    const gen = current();
    if (serving === null || gen !== serving) {
      throw new Error("Durable Object storage: this host no longer owns the object " +
                      "(fenced at generation " + gen + ")");
    }
  };
  const fenced = (fn) => (...args) => sync(() => { check(); return fn(...args); });
  for (const name of ["put", "delete"]) {
    const orig = s[name].bind(s);
    s[name] = fenced(orig);
  }
  const deleteAll = s.deleteAll.bind(s);
  s.deleteAll = async (...args) => {
    sync(check);
    const gen = serving;
    await deleteAll(...args);
    // deleteAll drops every table, the fence's too: put it back.
    sync(() => { current(); exec("DELETE FROM " + FENCE); exec("INSERT INTO " + FENCE + " VALUES (?)", gen); });
  };
  const transaction = s.transaction.bind(s);
  s.transaction = (fn, ...rest) => transaction(async (txn) => {
    for (const name of ["put", "delete"]) {
      const orig = txn[name].bind(txn);
      txn[name] = async (...a) => { sync(check); return orig(...a); };
    }
    return fn(txn);
  }, ...rest);
  const fencedSql = Object.create(sql);
  fencedSql.exec = (query, ...bindings) => sync(() => { check(); return exec(query, ...bindings); });
  Object.defineProperty(s, "sql", { value: fencedSql });
  s.setAlarm = async (t) => {
    const at = num(t);
    if (!Number.isFinite(at)) throw new TypeError("setAlarm() requires a Date or number");
    await alarms.set(id, at);
  };
  s.getAlarm = async () => alarms.get(id);
  s.deleteAlarm = async () => { await alarms.remove(id); };
  // Before the tenant's constructor runs: raise the fence to the generation the host
  // serves under (the facet class's props), or learn that a newer owner already did
  // (then every write of this instance is refused).
  const g = ctx.props && ctx.props.generation;
  if (Number.isInteger(g)) {
    sync(() => {
      const gen = current();
      if (gen > g) return;
      if (gen < g) { exec("DELETE FROM " + FENCE); exec("INSERT INTO " + FENCE + " VALUES (?)", g); }
      serving = g;
    });
  }
  return ctx;
}
`;
const META = "__wdl_meta";

function fromBase64(text) {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}

function relativeTo(from, to) {
  const up = from.split("/").length - 1;
  return (up ? "../".repeat(up) : "./") + to;
}

function withFlag(flags, flag) {
  const list = Array.isArray(flags) ? flags : [];
  return list.includes(flag) || list.includes("nodejs_compat") ? list : [...list, flag];
}

function fail(status, code, message) {
  return Response.json({ error: code, message }, { status });
}

function scopeOf(m) {
  return `${m.namespace}/${m.script}/${m.class_name}`;
}

async function stateJson(env, path) {
  const r = await env.STATE.fetch("http://state" + path, { headers: internalHeaders(env) });
  const body = await r.json();
  if (!r.ok) throw new Error(body.message || `state service answered ${r.status}`);
  return body;
}

// The tenant bundle as a worker whose main module exports the class, wrapped so
// its ctx.storage alarms go to the host.
// `self`: the version as a plain Worker (its entrypoints, for a self stub's calls).
function tenantCode(body, m, ctx, version, self = false) {
  const modules = {};
  for (const [name, mod] of Object.entries(body.modules)) {
    modules[name] = mod.b64 !== undefined ? { [mod.kind]: fromBase64(mod.b64) } : mod;
  }
  selfExports(modules);
  Object.assign(modules, SHIM);
  modules["__wdl/alarms.js"] = CTX_PATCH;
  const spec = JSON.stringify(relativeTo("__wdl/objects_main.js", body.mainModule));
  const cls = JSON.stringify(m.class_name);
  modules["__wdl/self_main.js"] = `import "./shim.js";\nimport * as tenant from ${spec};\n` +
    `import { setMain } from "./workers.js";\nsetMain(tenant);\nexport * from ${spec};\n` +
    `export default tenant.default ?? {};\n`;
  modules["__wdl/objects_main.js"] =
    `import "./alarms.js";\nimport "./shim.js";\nimport { patch } from "./alarms.js";\n` +
    `import * as tenant from ${spec};\n` +
    `import { setMain } from "./workers.js";\nsetMain(tenant);\n` +
    `const Base = tenant[${cls}];\n` +
    `if (typeof Base !== "function") throw new Error("class " + ${cls} + " is not exported");\n` +
    `export class WdlFacet extends Base {\n` +
    `  constructor(ctx, env) { super(patch(ctx), env); }\n` +
    // The host calls this when its own alarm fires (WdlObjectHost.alarm).
    `  async __wdl_alarm(info) { if (typeof this.alarm === "function") await this.alarm(info); }\n` +
    `}\n`;
  const env = { ...body.env };
  const kinds = {};
  const infos = {};
  for (const b of body.bindings || []) {
    // Only the kinds the registry marks in_objects are served inside objects
    // (docs/durable-objects.md, limits).
    const entry = ENTRYPOINTS[b.kind];
    if (!entry) continue;
    env[b.name] = ctx.exports[entry]({ props: b.props });
    kinds[b.name] = b.kind;
    if (INFO[b.kind]) infos[b.name] = INFO[b.kind](b.props);
  }
  if (Object.keys(kinds).length) {
    env.__WDL_BINDINGS = kinds;
    env.__WDL_INFO = infos;
  }
  if (!self) {
    env.__WDL_ALARMS = ctx.exports.WdlAlarms({ props: {
      namespace: m.namespace, script: m.script, class_name: m.class_name } });
  }
  env.__WDL_SELF = ctx.exports.WdlSelfBinding({ props: {
    namespace: m.namespace, worker: m.script, version } });
  return {
    compatibilityDate: body.compatibilityDate,
    // nodejs_als: the shim's AsyncLocalStorage (tenant/requests.js), as in the gateway.
    compatibilityFlags: withFlag(body.compatibilityFlags, "nodejs_als"),
    mainModule: self ? "__wdl/self_main.js" : "__wdl/objects_main.js",
    modules,
    env,
    // The namespace's egress policy, as for the worker's own fetch() (WdlObjectsOutbound).
    globalOutbound: ctx.exports.WdlObjectsOutbound({ props: {
      namespace: m.namespace, script: m.script } }),
  };
}

async function bundleOf(env, ns, script, version) {
  return stateJson(env, `/bundle?ns=${encodeURIComponent(ns)}` +
    `&worker=${encodeURIComponent(script)}&version=${encodeURIComponent(version)}` +
    `&instance=objects`);
}

// A self stub minted in a Durable Object calls the minting version's entrypoint, loaded
// here as a plain Worker.
setSelfLoader((env, ctx, ns, worker, version) =>
  env.LOADER.get(`${ns}:${worker}:${version}:self`, async () =>
    tenantCode(await bundleOf(env, ns, worker, version), { namespace: ns, script: worker },
               ctx, version, true)));

export class WdlObjectHost extends DurableObject {
  #facet = null;
  #loaderId = null;
  #generation = null;

  #stored = false;  // META is in this host object's storage

  async #meta(m) {
    if (m) {
      if (this.#stored) return m;
      this.#stored = true;
      const known = await this.ctx.storage.get(META);
      if (!known) {
        await this.ctx.storage.put(META, { namespace: m.namespace, script: m.script,
                                           class_name: m.class_name, id: m.id, name: m.name });
      }
      return m;
    }
    return await this.ctx.storage.get(META);
  }

  async #app(m) {
    const route = await routeOf(this.env, m);
    if (!route.route) {
      throw new Error(`Durable Object class ${m.class_name}: ` +
                      (route.missing && route.missing.message || "its worker is not deployed"));
    }
    const loaderId = `${route.route.id}:do:${m.class_name}`;
    const generation = Number.isInteger(m.generation) ? m.generation : 0;
    if (this.#facet && this.#loaderId === loaderId && this.#generation === generation) {
      return this.#facet;
    }
    if (this.#facet) {
      // A new version was promoted, or this host serves under a new lease generation:
      // the object restarts (and raises its fence) with its storage.
      try { this.ctx.facets.abort("app", new Error("the object is restarting")); } catch {}
      this.#facet = null;
    }
    const worker = this.env.LOADER.get(loaderId, async () => {
      const body = await stateJson(this.env, `/bundle?ns=${encodeURIComponent(m.namespace)}` +
        `&worker=${encodeURIComponent(m.script)}&version=${encodeURIComponent(route.route.version)}` +
        `&instance=objects`);
      return tenantCode(body, m, this.ctx, route.route.version);
    });
    this.#facet = this.ctx.facets.get("app", () => ({
      class: worker.getDurableObjectClass("WdlFacet", { props: { generation } }), id: m.id }));
    this.#loaderId = loaderId;
    this.#generation = generation;
    return this.#facet;
  }

  async call(m, method, argsJson) {
    await this.#meta(m);
    const app = await this.#app(m);
    try {
      const value = await app[method](...decodeValue(argsJson));
      return value === undefined ? { undefined: true } : { json: encodeValue(value, RPC) };
    } catch (err) {
      return { error: { name: String(err && err.name || "Error"),
                        message: String(err && err.message || err) } };
    }
  }

  // The host object's own HTTP fetch (a WebSocket upgrade passes through it; an RPC
  // method could not return one): the object's meta in x-wdl-do, set by the handler.
  async fetch(request) {
    const m = JSON.parse(request.headers.get("x-wdl-do"));
    const headers = new Headers(request.headers);
    headers.delete("x-wdl-do");
    await this.#meta(m);
    const inner = new Request(request.url, { method: request.method, headers,
                                             body: request.body, redirect: "manual" });
    return (await this.#app(m)).fetch(inner);
  }

  async setTenantAlarm(m, at) {
    await this.#meta(m);
    await this.ctx.storage.setAlarm(at);
  }

  async getTenantAlarm() {
    return await this.ctx.storage.getAlarm();
  }

  async deleteTenantAlarm() {
    await this.ctx.storage.deleteAlarm();
  }

  async alarm(info) {
    const m = await this.#meta(null);
    if (!m) return;
    const retry = { retryCount: info ? info.retryCount : 0, isRetry: !!(info && info.isRetry) };
    // Every host process that opened this object's files may fire its alarm: only the
    // shard's owner runs it; the others hand it over (at least once, maybe twice).
    const verdict = await ownerOf(this.env, m);
    if (verdict.mine) {
      const leave = await enter(this.env, internalHeaders(this.env), m);
      try {
        await this.runAlarm({ ...m, generation: verdict.generation }, retry);
      } finally {
        leave();
      }
      return;
    }
    if (!verdict.address) throw new Error(`alarm: no owner (${verdict.reason || "unknown"})`);
    const r = await this.env.PEERS.fetch(`http://${verdict.address}/__wdl/do/alarm`, {
      method: "POST",
      headers: internalHeaders(this.env, { "x-wdl-do": JSON.stringify(m),
                 "x-wdl-do-forwarded": "1", "content-type": "application/json" }),
      body: JSON.stringify({ info: retry }) });
    const body = await r.json().catch(() => ({}));
    // A throw makes workerd retry this alarm (with backoff).
    if (!r.ok || body.error) throw new Error(`alarm on the owner failed: ${JSON.stringify(body)}`);
  }

  async runAlarm(m, info) {
    const app = await this.#app(m);
    await app.__wdl_alarm(info);
  }

}

// A "mine" verdict is kept for as long as the supervisor said it may be relied on
// (its lease minus the margin, at most a second): the lease check is then one Map
// lookup instead of a loopback round trip. Writes are fenced regardless (CTX_PATCH).
const verdicts = new Map();  // shard key -> {verdict, until}
const VERDICT_CACHE_MAX_MS = 1000;

async function ownerOf(env, m) {
  const shard = String(parseInt(m.id.slice(0, 2), 16) % 4);
  const key = `${m.namespace}/${m.script}/${m.class_name}/${shard}`;
  const hit = verdicts.get(key);
  if (hit && Date.now() < hit.until) return hit.verdict;
  const q = new URLSearchParams({ namespace: m.namespace, script: m.script,
                                  class_name: m.class_name, shard });
  let verdict;
  try {
    verdict = await (await env.SUPERVISOR.fetch("http://supervisor/owner?" + q,
                                                { headers: internalHeaders(env) })).json();
  } catch (err) {
    return { mine: false, reason: "the host's supervisor is unreachable" };
  }
  if (verdict.mine && verdict.valid_ms > 0) {
    verdicts.set(key, { verdict, until: Date.now() + Math.min(verdict.valid_ms,
                                                              VERDICT_CACHE_MAX_MS) });
  } else {
    verdicts.delete(key);
  }
  return verdict;
}

// Routes of the classes' workers, for at most ROUTE_CACHE_MS: a promoted version
// reaches its objects within that long (docs/durable-objects.md).
const routes = new Map();  // ns/script -> {body, until}
const ROUTE_CACHE_MS = 1000;

async function routeOf(env, m) {
  const key = `${m.namespace}/${m.script}`;
  const hit = routes.get(key);
  if (hit && Date.now() < hit.until) return hit.body;
  const body = await stateJson(env,
    `/route?ns=${encodeURIComponent(m.namespace)}&worker=${encodeURIComponent(m.script)}`);
  if (body.route) routes.set(key, { body, until: Date.now() + ROUTE_CACHE_MS });
  else routes.delete(key);
  return body;
}

// Per-object values that are pure functions of their key, kept so a steady call does
// not recompute them: host object ids (idFromName hashes) and ids whose tag was
// checked. Bounded: cleared when full.
const CACHE_MAX = 10000;
const hostIds = new Map();  // scope/id -> DurableObjectId of the host object
const checkedTags = new Set();  // scope \0 id whose tag is right

function remember(cache, key, value) {
  if (cache.size >= CACHE_MAX) cache.clear();
  if (cache instanceof Set) cache.add(key); else cache.set(key, value);
}

function hostFor(env, m) {
  const key = `${scopeOf(m)}/${m.id}`;
  let id = hostIds.get(key);
  if (id === undefined) {
    id = env.HOST.idFromName(key);
    remember(hostIds, key, id);
  }
  return env.HOST.get(id);
}

// The tenant's alarm calls: props fix namespace/script/class; the id names an object
// of that class only.
export class WdlAlarms extends WorkerEntrypoint {
  #m(id) { return { ...this.ctx.props, id, name: null }; }
  async set(id, at) { await hostFor(this.env, this.#m(id)).setTenantAlarm(this.#m(id), at); }
  async get(id) { return await hostFor(this.env, this.#m(id)).getTenantAlarm(); }
  async remove(id) { await hostFor(this.env, this.#m(id)).deleteTenantAlarm(); }
}

// Every fetch() of a tenant's object: the URL judged by its namespace's egress policy
// (as the gateway's WdlEgress judges the worker's), the address by the NET network
// service (public addresses only). The policy comes with the worker's route (cached
// ROUTE_CACHE_MS); no route (the worker was deleted): nothing goes out.
export class WdlObjectsOutbound extends WorkerEntrypoint {
  // The worker's route: its namespace's egress policy and the Hyperdrive configs its
  // version binds.
  async #route() {
    const { namespace, script } = this.ctx.props;
    try {
      const route = await routeOf(this.env, { namespace, script });
      if (route.route) return route.route;
    } catch {
      // the state service is unreachable: refuse rather than guess
    }
    return null;
  }

  async #policy() {
    const route = await this.#route();
    return route ? route.egress || { mode: "public" } : { mode: "deny" };
  }

  // An object's connect(): the same judgement as the gateway's (sockets.js).
  async connect(socket) {
    const route = await this.#route();
    return serveConnect(this.env, this.ctx, socket, this.ctx.props.namespace,
                        route ? route.egress || { mode: "public" } : { mode: "deny" },
                        route && route.hyperdrive || []);
  }

  async fetch(request) {
    const { namespace } = this.ctx.props;
    const url = new URL(request.url);
    const policy = await this.#policy();
    const reason = egressRefusal(policy, url, this.env.EGRESS_ALLOW_LOOPBACK === "1");
    if (reason) {
      throw new Error(`WDL egress policy of namespace ${namespace} refused ` +
        `${url.protocol}//${url.host}: ${reason}`);
    }
    return this.env.NET.fetch(request);
  }
}

function parseMeta(request) {
  const m = JSON.parse(request.headers.get("x-wdl-do") || "null");
  if (!m || typeof m.id !== "string" || !/^[0-9a-f]{64}$/.test(m.id)) return null;
  for (const k of ["namespace", "script", "class_name"]) if (typeof m[k] !== "string") return null;
  // The props' class must be the one the id was made for (forged or foreign ids).
  const tagKey = `${scopeOf(m)}\0${m.id}`;
  if (!checkedTags.has(tagKey)) {
    if (idTag(scopeOf(m), m.id.slice(0, 32)) !== m.id.slice(32)) return null;
    remember(checkedTags, tagKey);
  }
  return { namespace: m.namespace, script: m.script, class_name: m.class_name, id: m.id,
           name: typeof m.name === "string" ? m.name : null };
}

async function callOf(request) {
  const raw = request.headers.get("x-wdl-do-method");
  if (raw === null) {
    // A gateway of the previous release: {method, args} as JSON.
    const body = await request.json();
    return { method: body.method, args: body.args };
  }
  return { method: decodeURIComponent(raw), args: await request.text() };
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    // Both sockets, every path, health included: the internal token first (internal.js).
    const refusal = internalRefusal(request, env);
    if (refusal) return refusal;
    if (url.pathname === "/__wdl/healthz") return Response.json({ ok: true });
    const m = parseMeta(request);
    if (!m) {
      return Response.json({ error: { name: "TypeError", message: "Durable Object ID is not valid for this namespace." } }, { status: 400 });
    }
    // Ownership (services/objects/ownership.py): serve only objects of shards whose
    // lease this host holds; forward the rest to the holder, once.
    const verdict = await ownerOf(env, m);
    if (!verdict.mine) {
      if (verdict.address && !request.headers.has("x-wdl-do-forwarded")) {
        const headers = new Headers(request.headers);
        headers.set("x-wdl-do-forwarded", "1");
        return env.PEERS.fetch(new Request(`http://${verdict.address}${url.pathname}`, {
          method: request.method, headers, body: request.body, redirect: "manual" }));
      }
      return Response.json({ error: { name: "Error", message:
        `Durable Object is not available on this host: ${verdict.reason || "no owner"}` } },
        { status: 503, headers: { "x-wdl-do-refused": "1" } });
    }
    // The generation this call is served under: the object's fence (CTX_PATCH).
    m.generation = verdict.generation;
    // In careful mode (after a hang of this host) tenant code runs announced (careful.js).
    const leave = await enter(env, internalHeaders(env), m);
    try {
      return await serve(request, env, url, m);
    } finally {
      leave();
    }
  },
};

async function serve(request, env, url, m) {
  const host = hostFor(env, m);
  if (url.pathname === "/__wdl/do/alarm") {
    const body = await request.json();
    try {
      await host.runAlarm(m, body.info);
      return Response.json({ ok: true });
    } catch (err) {
      return Response.json({ error: String(err && err.message || err) }, { status: 500 });
    }
  }
  if (url.pathname === "/__wdl/do/call") {
    // The method in a header, the arguments' JSON text as the body, the result's JSON
    // text as the answer (workerd/gateway/do.js).
    let out;
    try {
      const { method, args } = await callOf(request);
      out = await host.call(m, method, args);
    } catch (err) {
      out = { error: { name: "Error", message: String(err && err.message || err) } };
    }
    // Not a string: a value JSON.stringify gives nothing for (a function): answered
    // as before, the tenant wrapper then fails to parse it.
    if (out.error || (!out.undefined && typeof out.json !== "string")) return Response.json(out);
    if (out.undefined) return new Response(null, { headers: { "x-wdl-do-result": "undefined" } });
    return new Response(out.json, { headers: { "x-wdl-do-result": "json",
                                               "content-type": "application/json" } });
  }
  if (url.pathname === "/__wdl/do/fetch") {
    const headers = new Headers(request.headers);
    const target = headers.get("x-wdl-do-url") || "http://do/";
    for (const h of ["x-wdl-internal-token", "x-wdl-do-url", "x-wdl-do-forwarded"]) {
      headers.delete(h);
    }
    headers.set("x-wdl-do", JSON.stringify(m));  // with the generation it is served under
    const inner = new Request(target, { method: request.method, headers,
                                        body: request.body, redirect: "manual" });
    return host.fetch(inner);
  }
  return fail(404, "not_found", "no such route");
}
