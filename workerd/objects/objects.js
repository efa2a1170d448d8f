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
import SHIM from "./shim_sources.js";

export { WdlDo } from "./do.js";

const ALARM_PATCH = `
import { env } from "cloudflare:workers";
const alarms = env.__WDL_ALARMS;
delete env.__WDL_ALARMS;
function num(t) { return t instanceof Date ? t.getTime() : Number(t); }
export function patch(ctx) {
  const id = ctx.id.toString();
  const s = ctx.storage;
  s.setAlarm = async (t) => {
    const at = num(t);
    if (!Number.isFinite(at)) throw new TypeError("setAlarm() requires a Date or number");
    await alarms.set(id, at);
  };
  s.getAlarm = async () => alarms.get(id);
  s.deleteAlarm = async () => { await alarms.remove(id); };
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
  const r = await env.STATE.fetch("http://state" + path);
  const body = await r.json();
  if (!r.ok) throw new Error(body.message || `state service answered ${r.status}`);
  return body;
}

// The tenant bundle as a worker whose main module exports the class, wrapped so
// its ctx.storage alarms go to the host.
function tenantCode(body, m, ctx) {
  const modules = {};
  for (const [name, mod] of Object.entries(body.modules)) {
    modules[name] = mod.b64 !== undefined ? { [mod.kind]: fromBase64(mod.b64) } : mod;
  }
  Object.assign(modules, SHIM);
  modules["__wdl/alarms.js"] = ALARM_PATCH;
  const spec = JSON.stringify(relativeTo("__wdl/objects_main.js", body.mainModule));
  const cls = JSON.stringify(m.class_name);
  modules["__wdl/objects_main.js"] =
    `import "./alarms.js";\nimport "./shim.js";\nimport { patch } from "./alarms.js";\n` +
    `import * as tenant from ${spec};\n` +
    `const Base = tenant[${cls}];\n` +
    `if (typeof Base !== "function") throw new Error("class " + ${cls} + " is not exported");\n` +
    `export class WdlFacet extends Base {\n` +
    `  constructor(ctx, env) { super(patch(ctx), env); }\n` +
    // The host calls this when its own alarm fires (WdlObjectHost.alarm).
    `  async __wdl_alarm(info) { if (typeof this.alarm === "function") await this.alarm(info); }\n` +
    `}\n`;
  const env = { ...body.env };
  const kinds = {};
  const scopes = {};
  for (const b of body.bindings || []) {
    // Inside an object only plain values and Durable Object namespaces are served
    // (docs/durable-objects.md, limits).
    if (b.kind !== "durable_object") continue;
    env[b.name] = ctx.exports.WdlDo({ props: b.props });
    kinds[b.name] = b.kind;
    scopes[b.name] = scopeOf(b.props);
  }
  if (Object.keys(kinds).length) {
    env.__WDL_BINDINGS = kinds;
    env.__WDL_DO = scopes;
  }
  env.__WDL_ALARMS = ctx.exports.WdlAlarms({ props: {
    namespace: m.namespace, script: m.script, class_name: m.class_name } });
  return {
    compatibilityDate: body.compatibilityDate,
    // nodejs_als: the shim's AsyncLocalStorage (tenant/requests.js), as in the gateway.
    compatibilityFlags: withFlag(body.compatibilityFlags, "nodejs_als"),
    mainModule: "__wdl/objects_main.js",
    modules,
    env,
    globalOutbound: ctx.exports.WdlObjectsOutbound({ props: {} }),
  };
}

export class WdlObjectHost extends DurableObject {
  #facet = null;
  #loaderId = null;

  async #meta(m) {
    if (m) {
      const known = await this.ctx.storage.get(META);
      if (!known) await this.ctx.storage.put(META, m);
      return m;
    }
    return await this.ctx.storage.get(META);
  }

  async #app(m) {
    const route = await stateJson(this.env,
      `/route?ns=${encodeURIComponent(m.namespace)}&worker=${encodeURIComponent(m.script)}`);
    if (!route.route) {
      throw new Error(`Durable Object class ${m.class_name}: ` +
                      (route.missing && route.missing.message || "its worker is not deployed"));
    }
    const loaderId = `${route.route.id}:do:${m.class_name}`;
    if (this.#facet && this.#loaderId === loaderId) return this.#facet;
    if (this.#facet) {
      // A new version of the worker was promoted: the object restarts on it.
      try { this.ctx.facets.abort("app", new Error("a new version was promoted")); } catch {}
      this.#facet = null;
    }
    const worker = this.env.LOADER.get(loaderId, async () => {
      const body = await stateJson(this.env, `/bundle?ns=${encodeURIComponent(m.namespace)}` +
        `&worker=${encodeURIComponent(m.script)}&version=${encodeURIComponent(route.route.version)}` +
        `&instance=objects`);
      return tenantCode(body, m, this.ctx);
    });
    this.#facet = this.ctx.facets.get("app", () => ({
      class: worker.getDurableObjectClass("WdlFacet"), id: m.id }));
    this.#loaderId = loaderId;
    return this.#facet;
  }

  async call(m, method, argsJson) {
    await this.#meta(m);
    const app = await this.#app(m);
    try {
      const value = await app[method](...JSON.parse(argsJson));
      return value === undefined ? { undefined: true } : { json: JSON.stringify(value) };
    } catch (err) {
      return { error: { name: String(err && err.name || "Error"),
                        message: String(err && err.message || err) } };
    }
  }

  async fetchObject(m, request) {
    await this.#meta(m);
    return (await this.#app(m)).fetch(request);
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
    const app = await this.#app(m);
    // A throw here makes workerd retry this alarm (at least once, with backoff).
    await app.__wdl_alarm({ retryCount: info ? info.retryCount : 0, isRetry: !!(info && info.isRetry) });
  }
}

function hostFor(env, m) {
  return env.HOST.get(env.HOST.idFromName(`${scopeOf(m)}/${m.id}`));
}

// The tenant's alarm calls: props fix namespace/script/class; the id names an object
// of that class only.
export class WdlAlarms extends WorkerEntrypoint {
  #m(id) { return { ...this.ctx.props, id, name: null }; }
  async set(id, at) { await hostFor(this.env, this.#m(id)).setTenantAlarm(this.#m(id), at); }
  async get(id) { return await hostFor(this.env, this.#m(id)).getTenantAlarm(); }
  async remove(id) { await hostFor(this.env, this.#m(id)).deleteTenantAlarm(); }
}

export class WdlObjectsOutbound extends WorkerEntrypoint {
  async fetch(request) {
    return this.env.NET.fetch(request);
  }
}

function sameSecret(a, b) {
  if (typeof a !== "string" || typeof b !== "string" || a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

function parseMeta(request) {
  const m = JSON.parse(request.headers.get("x-wdl-do") || "null");
  if (!m || typeof m.id !== "string" || !/^[0-9a-f]{64}$/.test(m.id)) return null;
  for (const k of ["namespace", "script", "class_name"]) if (typeof m[k] !== "string") return null;
  // The props' class must be the one the id was made for (forged or foreign ids).
  if (idTag(scopeOf(m), m.id.slice(0, 32)) !== m.id.slice(32)) return null;
  return { namespace: m.namespace, script: m.script, class_name: m.class_name, id: m.id,
           name: typeof m.name === "string" ? m.name : null };
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/__wdl/healthz") return Response.json({ ok: true });
    if (!env.INTERNAL_TOKEN ||
        !sameSecret(request.headers.get("x-wdl-internal-token"), env.INTERNAL_TOKEN)) {
      return fail(404, "not_found", "no such route");
    }
    const m = parseMeta(request);
    if (!m) {
      return Response.json({ error: { name: "TypeError", message: "Durable Object ID is not valid for this namespace." } }, { status: 400 });
    }
    // Ownership (services/objects/ownership.py): serve only objects of shards whose
    // lease this host holds; forward the rest to the holder, once.
    const shard = parseInt(m.id.slice(0, 2), 16);
    const q = new URLSearchParams({ namespace: m.namespace, script: m.script,
                                    class_name: m.class_name, shard: String(shard) });
    let verdict;
    try {
      verdict = await (await env.SUPERVISOR.fetch("http://supervisor/owner?" + q)).json();
    } catch (err) {
      verdict = { mine: false, reason: "the host's supervisor is unreachable" };
    }
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
    const host = hostFor(env, m);
    if (url.pathname === "/__wdl/do/call") {
      const body = await request.json();
      try {
        return Response.json(await host.call(m, body.method, body.args));
      } catch (err) {
        return Response.json({ error: { name: "Error", message: String(err && err.message || err) } });
      }
    }
    if (url.pathname === "/__wdl/do/fetch") {
      const headers = new Headers(request.headers);
      const target = headers.get("x-wdl-do-url") || "http://do/";
      for (const h of ["x-wdl-internal-token", "x-wdl-do", "x-wdl-do-url"]) headers.delete(h);
      const inner = new Request(target, { method: request.method, headers,
                                          body: request.body, redirect: "manual" });
      return host.fetchObject(m, inner);
    }
    return fail(404, "not_found", "no such route");
  },
};
