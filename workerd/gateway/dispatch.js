// WdlDispatch: the gateway entrypoint behind a `dispatch_namespaces` binding (Workers
// for Platforms' dynamic dispatch; the tenant wrapper is workerd/tenant/dispatch.js,
// the model docs/platforms.md).
//
// Its props (eventlog/bindings/dispatch_namespace.py) name the dispatcher's namespace,
// the dispatch namespace and the outbound Worker; nothing a tenant passes changes them.
// Each call resolves the ACTIVE version of the named user worker at call time, checks
// the dispatch namespace's `*` grant again (a revoke takes effect on the next call),
// and runs the worker under a request name of its own (budgets.js) that carries the
// call's subrequest budget and its outbound parameters.
//
// Outbound Worker: a dispatched user worker is loaded in an isolate of its own whose
// globalOutbound is WdlEgress with `via` (the outbound's identity) in its props - set by
// the platform, so every fetch() of that isolate, named or not, reaches the outbound
// Worker instead of the network (throughOutbound). Every binding stub of that isolate
// carries `via` on: a child it loads and a service target it calls fetch through the
// same outbound. The outbound Worker is loaded with the call's parameters in its env
// (one isolate per distinct parameter set, MAX_PARAMETER_SETS of them named, the rest
// loaded unnamed), and its own fetches go through ITS namespace's egress policy.
import { WorkerEntrypoint } from "cloudflare:workers";
import { HEADER as REQUEST_ID, openRequest, outboundOf } from "./budgets.js";
import { admit } from "./containment.js";
import { lookup } from "./freshness.js";
import { count } from "./metrics.js";

// The user worker's export that runs an RPC method inside the call's request name
// (tenant/dispatch.js dispatchRunner), so its fetches carry the call's parameters.
export const DISPATCH_RUNNER = "__WdlDispatch";
// Worker names as the control plane accepts them (eventlog/validation.py NAME_RE):
// anything else is "not found" before any lookup.
const NAME_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const MAX_SUBREQUESTS = 1000000;
const MAX_WALL_MS = 15 * 60 * 1000;
const MAX_PARAMETER_SETS = 256;
const MAX_PARAMETER_SETS_PER_NAMESPACE = 32;
const MAX_PARAMETERS_BYTES = 64 * 1024;

let host = null;  // {stubFor, fetchCode} of gateway.js (set there: no import cycle)
export function setDispatchHost(h) {
  host = h;
}

export function viaKey(via) {
  return `${via.namespace}/${via.worker}/${(via.parameters || []).join(",")}`;
}

function notFound(name) {
  const shown = typeof name === "string" ? JSON.stringify(name.slice(0, 64)) : typeof name;
  return new Error(`Worker not found: ${shown} is not a worker of this dispatch namespace`);
}

// options.limits -> the call's budgets. cpuMs: this workerd cannot enforce CPU time.
function callLimits(own, options) {
  const limits = options && options.limits;
  const out = { subrequests: (own && own.subrequests) || null,
                wall_ms: (own && own.wall_ms) || null };
  if (limits === undefined || limits === null) return out;
  if (typeof limits !== "object") throw new TypeError("options.limits must be an object");
  for (const key of Object.keys(limits)) {
    if (key === "cpuMs") {
      throw new TypeError("options.limits.cpuMs is not supported by WDL: this runtime cannot " +
        "enforce CPU time per call (use subRequests, or wallMs for a wall-time limit)");
    }
    if (key !== "subRequests" && key !== "wallMs") {
      throw new TypeError(`options.limits.${key} is not a dispatch limit (subRequests, wallMs)`);
    }
  }
  const pick = (value, name, max) => {
    if (value === undefined) return null;
    if (!Number.isInteger(value) || value < 0 || value > max) {
      throw new TypeError(`options.limits.${name} must be an integer from 0 to ${max}`);
    }
    return value;
  };
  const sub = pick(limits.subRequests, "subRequests", MAX_SUBREQUESTS);
  const wall = pick(limits.wallMs, "wallMs", MAX_WALL_MS);
  // The lower of the call's and the user worker's namespace's own budget.
  if (sub !== null) out.subrequests = out.subrequests ? Math.min(out.subrequests, sub) : sub;
  if (wall !== null) out.wall_ms = out.wall_ms ? Math.min(out.wall_ms, wall) : wall;
  // budgets.js reads 0 as "the default": a zero budget is one that is already spent.
  if (out.subrequests === 0) out.zero = true;
  return out;
}

// A parameter value must be a JSON value: the outbound isolate is named after the values'
// JSON, so two values the same as JSON (two Maps, two ArrayBuffers, NaN and null, two
// stubs) would share one isolate and one call would see the other's parameters.
function checkJson(value, where, depth) {
  const bad = () => new TypeError(`${where} must be a JSON value (a string, a finite ` +
    "number, a boolean, null, or an array or plain object of those)");
  if (depth > 32) throw bad();
  if (value === null || typeof value === "string" || typeof value === "boolean") return;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw bad();
    return;
  }
  if (typeof value !== "object") throw bad();
  if (Array.isArray(value)) {
    for (const item of value) checkJson(item, where, depth + 1);
    return;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) throw bad();
  for (const item of Object.values(value)) checkJson(item, where, depth + 1);
}

// options.outbound -> the declared parameters' values (undeclared names are refused).
function outboundParams(declared, options) {
  const given = options && options.outbound;
  if (given === undefined || given === null) return {};
  if (typeof given !== "object" || Array.isArray(given)) {
    throw new TypeError("options.outbound must be an object of the outbound parameters");
  }
  const out = {};
  for (const key of Object.keys(given)) {
    if (!declared.includes(key)) {
      throw new TypeError(`options.outbound.${key.slice(0, 64)} is not a parameter the ` +
        `outbound Worker declares (${declared.join(", ") || "none"})`);
    }
    checkJson(given[key], `options.outbound.${key}`, 0);
    out[key] = given[key];
  }
  if (JSON.stringify(out).length > MAX_PARAMETERS_BYTES) {
    throw new TypeError(`options.outbound is over ${MAX_PARAMETERS_BYTES} bytes as JSON`);
  }
  return out;
}

async function wallRace(work, ms, what) {
  if (!ms) return work;
  let timer;
  const over = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} exceeded its wall-time limit of ` +
      `${ms} ms (options.limits.wallMs)`)), ms);
  });
  try {
    return await Promise.race([work, over]);
  } finally {
    clearTimeout(timer);
  }
}

export class WdlDispatch extends WorkerEntrypoint {
  // -> {stub, ns, name, limits, named}: the user worker, ready to call.
  async #open(name, options) {
    if (typeof name !== "string" || !NAME_RE.test(name)) throw notFound(name);
    const { namespace, dispatch_namespace: dns, outbound, parameters } = this.ctx.props;
    if (this.ctx.props.via) {
      // The caller is itself a dispatched user worker (its binding stubs carry `via`): the
      // worker it would dispatch runs under another outbound Worker or none - an escape.
      throw new Error("a dispatched user worker cannot dispatch: its dispatch namespace " +
        "bindings work only outside a dispatched call (Workers for Platforms)");
    }
    const entry = await lookup(this.env, dns, name);
    if (entry.missing) {
      if (entry.missing.code === "worker_not_found") throw notFound(name);
      throw new Error(`dispatch namespace ${dns}: ${entry.missing.message}`);
    }
    if (dns !== namespace &&
        !entry.grants.some((g) => g.namespace === namespace && g.worker === "*")) {
      throw new Error(`dispatch namespace ${dns} does not grant ${namespace} its workers ` +
        `(\`wdl ns grant ${namespace} --ns ${dns}\`)`);
    }
    const limits = callLimits(entry.limits, options);
    const via = outbound ? { namespace, worker: outbound, parameters: parameters || [] } : null;
    const params = via ? outboundParams(via.parameters, options) : {};
    if (!via && options && options.outbound !== undefined && options.outbound !== null) {
      throw new TypeError("options.outbound: this dispatch namespace binding has no outbound " +
        "Worker");
    }
    const stub = await host.stubFor(this.env, this.ctx, dns, name, entry, via);
    const named = openRequest(dns, name, limits, false,
                              via ? { key: viaKey(via), params } : null);
    if (limits.zero) named.spendAll();
    return { stub, dns, limits, named };
  }

  async fetchWorker(name, request, options) {
    const { stub, dns, limits, named } = await this.#open(name, options);
    const release = admit(dns, name, null);
    const t0 = Date.now();
    let status = null;
    try {
      const inner = new Request(request);
      inner.headers.set(REQUEST_ID, named.id);  // replaces any the dispatcher sent
      const response = await wallRace(stub.getEntrypoint(DISPATCH_RUNNER).fetch(inner),
                                      limits.wall_ms,
                                      `${dns}/${name}`);
      status = response.status;
      return response;
    } finally {
      count(this.env, this.ctx, dns, name, status, status === null ? "exception" : "ok",
            Date.now() - t0);
      named.close();
      release();
    }
  }

  async callWorker(name, method, args, options) {
    if (typeof method !== "string" || method === "fetch" || method.startsWith("__")) {
      throw new TypeError(`${String(method)} is not an RPC method`);
    }
    const { stub, dns, limits, named } = await this.#open(name, options);
    const release = admit(dns, name, null);
    const t0 = Date.now();
    let outcome = "exception";
    try {
      const result = await wallRace(stub.getEntrypoint(DISPATCH_RUNNER)
        .call(named.id, method, Array.isArray(args) ? args : []), limits.wall_ms,
      `${dns}/${name}`);
      outcome = "ok";
      return result;
    } finally {
      count(this.env, this.ctx, dns, name, null, outcome, Date.now() - t0);
      named.close();
      release();
    }
  }
}

const paramSets = new Map();  // outbound isolate id -> true (named isolates made)
// Named parameter sets per dispatcher namespace: one platform spending every name of the
// process left every other platform's outbound a fresh isolate (and a bundle fetch) per
// fetch (tests/security/test_redteam_platforms.py).
const setsOf = new Map();

async function digest(text) {
  const bytes = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(bytes)].slice(0, 16).map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}

// The outbound Worker with `params` in its env (bindings of its own win over a
// parameter of the same name: the dispatcher's owner deploys both).
async function outboundStub(env, ctx, ns, worker, entry, params) {
  const keys = Object.keys(params);
  if (keys.length === 0) return host.stubFor(env, ctx, ns, worker, entry);
  const id = `${entry.id}:params:${await digest(JSON.stringify(params))}`;
  const made = async () => {
    const { code } = await host.fetchCode(env, ctx, ns, worker, entry.version, false);
    const own = new Set(Object.keys(code.env));
    for (const key of keys) if (!own.has(key)) code.env[key] = params[key];
    return code;
  };
  if (paramSets.has(id)) return env.LOADER.get(id, made);
  const mine = setsOf.get(ns) || 0;
  if (paramSets.size >= MAX_PARAMETER_SETS || mine >= MAX_PARAMETER_SETS_PER_NAMESPACE) {
    return env.LOADER.load(await made());
  }
  const code = await made();  // before get(): a failed fetch must not poison the id
  paramSets.set(id, true);
  setsOf.set(ns, (setsOf.get(ns) || 0) + 1);
  return env.LOADER.get(id, () => code);
}

// A fetch() of a dispatched user worker (WdlEgress with `via`): the outbound Worker
// answers it, with the parameters of the call whose request name it carries.
export async function throughOutbound(env, ctx, userNs, via, request, id) {
  const entry = await lookup(env, via.namespace, via.worker);
  if (entry.missing) {
    throw new Error(`the outbound Worker ${via.worker} of namespace ${via.namespace} is not ` +
      `available: ${entry.missing.message}`);
  }
  const params = outboundOf(id, userNs, viaKey(via)) || {};
  const stub = await outboundStub(env, ctx, via.namespace, via.worker, entry, params);
  const named = openRequest(via.namespace, via.worker, entry.limits);
  const inner = new Request(request);
  inner.headers.set(REQUEST_ID, named.id);
  try {
    return await stub.getEntrypoint().fetch(inner);
  } finally {
    named.close();
  }
}
