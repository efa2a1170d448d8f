// The WDL gateway: a system worker in workerd that routes each request to the
// active version of a tenant worker and runs it in a dynamically loaded
// isolate (env.LOADER, a workerLoader binding). Route data and bundles come
// from the Python state service (env.STATE, an external service binding);
// how the routes are kept fresh is freshness.js.
import { WorkerEntrypoint } from "cloudflare:workers";
import { normalizeHost, resolveTarget } from "./routing.js";
import { egressRefusal } from "./egress.js";
import { refuseSocket, serveConnect, splitRequestName } from "./sockets.js";
import { HEADER as REQUEST_ID, fromTailDelivery, openRequest, spendSubrequest, withinWall }
  from "./budgets.js";
import { admit, announce, ended, mark, nameVersion, probationEnter }
  from "./containment.js";
import { BUNDLE_TIMEOUT_MS, NO_CLAIMS, PlatformError, claims, dropRoute, fresh, lookup, pushed,
         reply, roundStats, st, stateGet, withTimeout } from "./freshness.js";
import { internalHeaders, internalRefusal } from "./internal.js";
import TENANT_SHIM from "./shim_sources.js";
import { ENTRYPOINTS, INFO, MAIN_EXPORTS } from "./binding_kinds.js";
import { setTailInvoker } from "./tail.js";
import { DISPATCH_RUNNER, setDispatchHost, throughOutbound, viaKey } from "./dispatch.js";
import { decodeMessages } from "./queues.js";
import { count } from "./metrics.js";

// Each binding kind's entrypoint (generated from eventlog/bindings/).
export * from "./binding_entrypoints.js";
export { WdlTail } from "./tail.js";
export { WdlSelf, WdlSelfBinding } from "./self.js";
import { selfExports, setSelfLoader } from "./self.js";
// Tenants' named dynamic Workers, kept per namespace (docs/loaders.md "Limits").
export { WdlChildren } from "./children.js";
import { childStats } from "./children.js";
import { routeAssets } from "./assets.js";

// Platform modules added to every ES-module tenant bundle under `__wdl/`
// (tenant module names may not start with it): TENANT_SHIM, generated with the
// binding kinds' index (services/dataplane/binding_index.py). `__wdl/main.js`
// becomes the main module: it runs the shim, then re-exports the tenant's own
// main module. Dynamic Workers (loader.js) get the same shim.

// The platform's export that runs a workflow instance's step (tenant/workflows.js
// mainExport; the registry's main_export of the workflow kind).
const WORKFLOW_RUNNER = "__WdlWorkflows";
// The platform's export that runs the tenant's tail() for Tail Workers (tenant/tail.js).
const TAIL_RUNNER = "__WdlTail";

// --- code ----------------------------------------------------------------------

function fromBase64(text) {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}

function relativeTo(from, to) {
  // `to` as a specifier that resolves to it from module `from` (both bundle paths).
  const up = from.split("/").length - 1;
  return (up ? "../".repeat(up) : "./") + to;
}

// The tenant's env: plain values as they are, and each platform binding as a
// stub of a gateway entrypoint whose props only the platform sets.
// `via`: the outbound Worker a dispatched user worker runs under (dispatch.js): every
// binding stub carries it on, so a service target or a loaded child is intercepted too.
function tenantEnv(ctx, body, via = null) {
  const env = { ...body.env };
  const kinds = {};
  for (const b of body.bindings || []) {
    const factory = ctx.exports[ENTRYPOINTS[b.kind]];
    if (!factory) throw new PlatformError(500, "binding_unsupported",
      `binding ${b.name}: kind ${b.kind} is not served by this gateway`);
    env[b.name] = factory({ props: via ? { ...b.props, via } : b.props });
    kinds[b.name] = b.kind;
    const info = INFO[b.kind];
    // Public facts for the tenant wrapper (e.g. the scope a DO's ids are made for).
    if (info) (env.__WDL_INFO ||= {})[b.name] = info(b.props);
  }
  if (Object.keys(kinds).length) env.__WDL_BINDINGS = kinds;
  return env;
}

function withFlag(flags, flag) {
  const list = Array.isArray(flags) ? flags : [];
  return list.includes(flag) || list.includes("nodejs_compat") ? list : [...list, flag];
}

// Exports a binding kind adds to the tenant's main module (the registry's
// main_export): `export const <name> = mainExport(tenant)` of tenant/<module>.js.
function mainExports(bindings, spec) {
  const kinds = new Set((bindings || []).map((b) => b.kind));
  let out = "";
  for (const [kind, [name, file]] of Object.entries(MAIN_EXPORTS)) {
    if (!kinds.has(kind)) continue;
    if (!out) out = `import * as wdlTenant from ${spec};\n`;
    out += `import { mainExport as ${name}Of } from ${JSON.stringify("./" + file)};\n` +
      `export const ${name} = ${name}Of(wdlTenant);\n`;
  }
  return out;
}

// env.__WDL_SELF: the minter of the version's self stubs, with the props of what is loaded.
function withSelf(ctx, env, namespace, worker, version, via = null) {
  env.__WDL_SELF = ctx.exports.WdlSelfBinding({ props: via
    ? { namespace, worker, version, via } : { namespace, worker, version } });
  return env;
}

function tenantModules(body) {
  const modules = {};
  for (const [name, m] of Object.entries(body.modules)) {
    modules[name] = m.b64 !== undefined ? { [m.kind]: fromBase64(m.b64) } : m;
  }
  const main = body.modules[body.mainModule];
  if (!main || main.js === undefined) return { modules, mainModule: body.mainModule };
  // ES module entry: wrap it so the shim runs first. `export *` skips
  // `default`, hence the second line.
  const spec = JSON.stringify(relativeTo("__wdl/main.js", body.mainModule));
  selfExports(modules);
  Object.assign(modules, TENANT_SHIM);
  // requests.js before the tenant's module: its top level already sees the
  // platform's fetch().
  modules["__wdl/main.js"] = `import "./shim.js";\nimport { wrapDefault } from "./requests.js";\n` +
    `export * from ${spec};\n` + (body.hasDefault === false ? "" :
      `import tenantDefault from ${spec};\nexport default wrapDefault(tenantDefault);\n` +
      `import { tailRunner } from "./tail.js";\nimport * as wdlAll from ${spec};\n` +
      `export const ${TAIL_RUNNER} = tailRunner(tenantDefault, wdlAll);\n` +
      `import { dispatchRunner } from "./dispatch.js";\n` +
      `export const ${DISPATCH_RUNNER} = dispatchRunner(tenantDefault);\n`) +
    mainExports(body.bindings, spec) +
    `import { setMain as wdlSetMain } from "./workers.js";\nimport * as wdlSelfOf from ${spec};\n` +
    "wdlSetMain(wdlSelfOf);\n";
  return { modules, mainModule: "__wdl/main.js" };
}

// `tail`: load it with a tail consumer (someone tails the worker: services/state/tails.py).
async function fetchCode(env, ctx, ns, worker, version, tail, via = null) {
  const body = await stateGet(env, `/bundle?ns=${encodeURIComponent(ns)}` +
    `&worker=${encodeURIComponent(worker)}&version=${encodeURIComponent(version)}` +
    `&instance=${encodeURIComponent(env.INSTANCE)}&tail=${tail ? 1 : 0}`);
  const { modules, mainModule } = tenantModules(body);
  const consumers = Array.isArray(body.tailConsumers) ? body.tailConsumers : [];
  return {
    id: body.id,
    code: {
      compatibilityDate: body.compatibilityDate,
      // nodejs_als: the shim's AsyncLocalStorage (tenant/requests.js).
      compatibilityFlags: withFlag(body.compatibilityFlags, "nodejs_als"),
      mainModule,
      modules,
      env: withSelf(ctx, tenantEnv(ctx, body, via), ns, worker, version, via),
      // Every fetch() of the tenant goes through its namespace's egress policy (or, for a
      // dispatched user worker, to its dispatcher's outbound Worker: dispatch.js).
      globalOutbound: ctx.exports.WdlEgress({ props: via ? { namespace: ns, worker, via }
        : { namespace: ns, worker } }),
      // Live tail: workerd reports each invocation to WdlTail (workerd/gateway/tail.js)
      // with props only the platform sets - only while someone tails the worker (the
      // bundle's id then says so): workerd's trace building costs a large share of
      // throughput (docs/dataplane.md). Operators may turn it off for good
      // (GatewayOptions.tails); request metrics do not depend on it (metrics.js).
      // Tail Workers: a version naming tail consumers is always loaded with WdlTail,
      // which feeds their tail() (`live` says whether `wdl tail` wants the events too).
      tails: env.TAILS === "0" || (body.tail !== true && consumers.length === 0) ? []
        : [ctx.exports.WdlTail({ props: { namespace: ns, worker, version,
                                          live: body.tail === true, consumers } })],
    },
  };
}

// The code is fetched *before* LOADER.get(): a failing callback would poison
// the id for the life of the process, a failed fetch here only fails this request.
// `via` (dispatch.js): an isolate of its own whose fetches go to that outbound Worker.
async function stubFor(env, ctx, ns, worker, entry, via = null) {
  const suffix = via ? `:via:${viaKey(via)}` : "";
  let id = entry.id + suffix;
  const tail = entry.tail === true;
  if (st.ready.has(id)) {
    return env.LOADER.get(id,
      async () => (await fetchCode(env, ctx, ns, worker, entry.version, tail, via)).code);
  }
  let pending = st.pending.get(id);
  if (!pending || Date.now() - pending.startedAt > BUNDLE_TIMEOUT_MS) {
    const mine = { startedAt: Date.now(), promise: null };
    mine.promise = fetchCode(env, ctx, ns, worker, entry.version, tail, via).finally(() => {
      if (st.pending.get(id) === mine) st.pending.delete(id);
    });
    st.pending.set(id, mine);
    ctx.waitUntil(mine.promise.catch(() => {}));
    pending = mine;
  }
  const loaded = await withTimeout(pending.promise, BUNDLE_TIMEOUT_MS, "the bundle fetch");
  if (loaded.id !== entry.id) {
    // Secrets changed between the route answer and the bundle: name the isolate
    // after what it really contains and re-resolve the route next time.
    dropRoute(ns, worker);
    id = loaded.id + suffix;
  }
  const stub = env.LOADER.get(id, () => loaded.code);
  st.ready.add(id);
  return stub;
}

// A self stub's calls go to the version that minted it (self.js), under the outbound
// Worker it ran under when dispatched (`via`: its self stubs do not escape the outbound).
// Admitted and counted under the minting version, like a service call.
setSelfLoader((env, ctx, ns, worker, version, via) =>
  stubFor(env, ctx, ns, worker, { version, id: `${ns}:${worker}:${version}` }, via || null),
async (env, ctx, ns, worker, version, method, run) => {
  const release = admit(ns, worker, version);
  const t0 = Date.now();
  let outcome = "exception";
  let status = null;
  try {
    const result = await run();
    if (method === "fetch") status = result.status;
    outcome = "ok";
    return result;
  } finally {
    count(env, ctx, ns, worker, status, outcome, Date.now() - t0);
    release();
  }
});

// Dynamic dispatch (dispatch.js) loads user workers and outbound Workers with this code.
setDispatchHost({ stubFor, fetchCode });

// --- cron ----------------------------------------------------------------------

// POST /__wdl/scheduled {namespace, worker, version_id, cron, scheduled_time}: the
// scheduler has claimed this slot for this exact version; run its scheduled().
async function scheduled(request, env, ctx) {
  if (request.method !== "POST") return reply(405, "method_not_allowed", "POST only");
  const job = await request.json();
  await fresh(env, ctx);
  const current = await lookup(env, job.namespace, job.worker);
  if (current.missing && (current.missing.code === "version_quarantined" ||
                          current.missing.code === "namespace_quarantined")) {
    return new Response(JSON.stringify({ outcome: "quarantined",
      error: current.missing.message }), {
      status: 503, headers: { "content-type": "application/json" } });
  }
  const base = `${job.namespace}:${job.worker}:${job.version_id}`;
  const tail = current.tail === true && current.version === job.version_id;
  const stub = await stubFor(env, ctx, job.namespace, job.worker,
    { version: job.version_id, id: tail ? current.id : base, tail });
  // Scheduled runs are rare: always announced, so a hang in one is named exactly.
  const token = crypto.randomUUID();
  await announce(env, [job.namespace, job.worker, job.version_id], token);
  const release = admit(job.namespace, job.worker, job.version_id);
  const t0 = Date.now();
  let outcome = "exception";
  try {
    // A number, as on Cloudflare: the loader hands the options over as they are.
    // Fetcher.scheduled() does not throw when the handler does: it answers
    // {outcome, noRetry}, and anything but "ok" is a failed run (Cloudflare's cron
    // events show it as "exception", "exceededCpu", ...). The handler's own message
    // stays in its isolate; `wdl tail` shows it.
    const result = await stub.getEntrypoint().scheduled({
      scheduledTime: Number(job.scheduled_time), cron: String(job.cron) });
    outcome = String((result && result.outcome) || "exception");
    if (outcome !== "ok") {
      return new Response(JSON.stringify({ outcome, error: `scheduled() ended with outcome ` +
        `"${outcome}"${outcome === "exception" ? " (an uncaught exception; wdl tail shows " +
        "its message)" : ""}` }), {
        status: 500, headers: { "content-type": "application/json" } });
    }
    return new Response(JSON.stringify({ outcome: "ok" }), {
      headers: { "content-type": "application/json" } });
  } catch (err) {
    return new Response(JSON.stringify({
      outcome: "exception", error: String(err && err.message || err).slice(0, 1000) }), {
      status: 500, headers: { "content-type": "application/json" } });
  } finally {
    count(env, ctx, job.namespace, job.worker, null, outcome, Date.now() - t0);
    release();
    ended(token);
  }
}

// --- queues --------------------------------------------------------------------

// POST /__wdl/queue {namespace, worker, queue, messages}: the queue consumer runs one
// batch on the worker's active version (Fetcher.queue, which needs the gateway's
// `service_binding_extra_handlers` flag) and gets workerd's outcome back: {outcome,
// ackAll, retryBatch, explicitAcks, retryMessages, undecodable}. The consumer counts
// an attempt for what the tenant's batch did (docs/queues.md "Failures"): a 503 with a
// code other than `queue_invoke_failed` means nothing of the tenant's ran (no active
// version, held, the platform's lookup failed): tried again without counting.
// `undecodable` lists the messages whose stored body could not be turned back into a
// value (a poisoned `v8` body): left out of the batch, each counts a failed attempt.
async function queueBatch(request, env, ctx) {
  if (request.method !== "POST") return reply(405, "method_not_allowed", "POST only");
  let job, current, stub;
  try {
    job = await request.json();
    await fresh(env, ctx);
    current = await lookup(env, job.namespace, job.worker);
    if (current.missing) {
      return reply(503, current.missing.code || "worker_not_found",
        current.missing.message || `${job.namespace}/${job.worker} has no active version`);
    }
    stub = await stubFor(env, ctx, job.namespace, job.worker, current);
  } catch (err) {
    return reply(503, "queue_not_run", String(err && err.message || err).slice(0, 1000));
  }
  const { messages, undecodable } = decodeMessages(job.messages);
  const json = (doc) => new Response(JSON.stringify(doc), {
    headers: { "content-type": "application/json" } });
  if (messages.length === 0) {
    return json({ outcome: "exception", ackAll: false, retryBatch: { retry: false },
                  explicitAcks: [], retryMessages: [], undecodable });
  }
  // Announced like a cron run: no barrier round names this target before its code runs,
  // so a queue() that hangs the process would otherwise be blamed on nobody.
  const token = crypto.randomUUID();
  await announce(env, [job.namespace, job.worker, current.version], token);
  const release = admit(job.namespace, job.worker, current.version);
  const t0 = Date.now();
  let outcome = "exception";
  try {
    const result = await stub.getEntrypoint().queue(String(job.queue), messages);
    if (result && result.outcome === "ok") outcome = "ok";
    return json({ ...result, undecodable });
  } catch (err) {
    return reply(503, "queue_invoke_failed", String(err && err.message || err).slice(0, 1000));
  } finally {
    count(env, ctx, job.namespace, job.worker, null, outcome, Date.now() - t0);
    release();
    ended(token);
  }
}

// --- Tail Workers ----------------------------------------------------------------

// A batch of TraceItems for `consumer`, a worker of the producer's own namespace `ns`
// (the producer's accepted version names it; props only the platform sets): its active
// version's tail() runs through the platform's export. "delivered", "no_consumer" (no
// active version) or "no_handler" (no tail handler); throws when the call failed.
setTailInvoker(async (env, ctx, ns, consumer, events) => {
  await fresh(env, ctx);
  const entry = await lookup(env, ns, consumer);
  if (entry.missing) return "no_consumer";
  const stub = await stubFor(env, ctx, ns, consumer, entry);
  // Announced before it runs, as cron runs and queue batches are: a tail() that spins
  // is named exactly. Unannounced, the hang was blamed on whatever the last barrier
  // round named - another namespace's request (tests/security/test_redteam_fullstack.py).
  const token = crypto.randomUUID();
  await announce(env, [ns, consumer, entry.version], token);
  const release = admit(ns, consumer, entry.version);
  // Named as a tail delivery: what tail() calls over a service binding feeds no tail
  // consumer (WdlService), and its fetches are held to the subrequest budget.
  const named = openRequest(ns, consumer, entry.limits, true);
  const t0 = Date.now();
  let outcome = "exception";
  try {
    const result = await stub.getEntrypoint(TAIL_RUNNER).deliver(events, named.id);
    outcome = "ok";
    return result && result.handled === false ? "no_handler" : "delivered";
  } finally {
    count(env, ctx, ns, consumer, null, outcome, Date.now() - t0);
    named.close();
    release();
    ended(token);
  }
});

// --- workflows -----------------------------------------------------------------

// POST /__wdl/workflow {namespace, worker, version_id, class_name, instance_id, params,
// created_at, history}: the workflows engine runs one invocation of an instance on its
// pinned version; the answer is {report} (tenant/workflows.js). 500: run it again later.
async function workflow(request, env, ctx) {
  if (request.method !== "POST") return reply(405, "method_not_allowed", "POST only");
  const job = await request.json();
  const json = (status, doc) => new Response(JSON.stringify(doc), {
    status, headers: { "content-type": "application/json" } });
  await fresh(env, ctx);
  // A held namespace runs no code at all; the engine retries with backoff until it is
  // lifted (docs/containment.md). Other misses do not matter: the version is pinned.
  const current = await lookup(env, job.namespace, job.worker);
  if (current.missing && current.missing.code === "namespace_quarantined") {
    return json(503, { outcome: "held", error: current.missing.message });
  }
  let stub;
  try {
    stub = await stubFor(env, ctx, job.namespace, job.worker,
      { version: job.version_id, id: `${job.namespace}:${job.worker}:${job.version_id}` });
  } catch (err) {
    // The pinned version is gone (deleted, purged): the instance cannot run, ever.
    if (!(err instanceof PlatformError) || err.status !== 404) throw err;
    return json(200, { report: { kind: "error", error: { name: "Error",
      message: `version ${job.version_id} of ${job.namespace}/${job.worker} is not ` +
        `available: ${err.message}` } } });
  }
  // Announced, as a queue batch is (above).
  const token = crypto.randomUUID();
  await announce(env, [job.namespace, job.worker, job.version_id], token);
  const release = admit(job.namespace, job.worker, job.version_id);
  const t0 = Date.now();
  let outcome = "exception";
  try {
    const report = await stub.getEntrypoint(WORKFLOW_RUNNER).run(job);
    outcome = "ok";
    return json(200, { report });
  } catch (err) {
    const text = String(err && err.message || err).slice(0, 1000);
    if (text.includes("Failed to start Worker")) {
      // The version cannot run the instance, now or ever: the instance errors.
      return json(200, { report: { kind: "error", error: { name: "Error", message: text } } });
    }
    return json(500, { outcome: "exception", error: text });
  } finally {
    count(env, ctx, job.namespace, job.worker, null, outcome, Date.now() - t0);
    release();
    ended(token);
  }
}

// --- service bindings and egress -------------------------------------------------

async function serviceTarget(env, ctx, props) {
  const { namespace, target_namespace: targetNs, worker } = props;
  const entry = await lookup(env, targetNs, worker);
  if (entry.missing) {
    throw new Error(`service binding: ${entry.missing.message}`);
  }
  if (targetNs !== namespace &&
      !entry.grants.some((g) => g.namespace === namespace && (g.worker === "*" ||
                                                              g.worker === worker))) {
    throw new Error(`service binding: namespace ${targetNs} does not grant ` +
      `${namespace} access to ${worker}`);
  }
  const stub = await stubFor(env, ctx, targetNs, worker, entry, carriedVia(props));
  return props.entrypoint ? stub.getEntrypoint(props.entrypoint) : stub.getEntrypoint();
}

// The outbound Worker a service target runs under: the caller's, only for a target of the
// caller's own namespace (the dispatch namespace). A target in another namespace is that
// namespace's code and fetches with its secrets under its own egress policy: its grant
// lets the caller call it, never lets the caller's platform read its traffic.
function carriedVia(props) {
  return props.via && props.target_namespace === props.namespace ? props.via : null;
}

// A call from inside a tail() delivery of the caller's namespace (the name it carries,
// tenant/service.js): run through the target's TAIL_RUNNER export, whose invocations
// never feed a tail consumer, so a tail worker calling its producer cannot loop.
async function tailRelay(env, ctx, props, name) {
  if (!fromTailDelivery(name, props.namespace)) return null;
  const { target_namespace: targetNs, worker } = props;
  await serviceTarget(env, ctx, props);  // the same checks (missing, grants)
  const entry = await lookup(env, targetNs, worker);
  const runner = (await stubFor(env, ctx, targetNs, worker, entry, carriedVia(props)))
    .getEntrypoint(TAIL_RUNNER);
  return (method, args) => runner.relay(props.entrypoint || "", method, args);
}

// A tenant's service binding: resolves the target's active version at call time
// (the route cache is as fresh as the calling request's barrier).
export class WdlService extends WorkerEntrypoint {
  async fetch(request) {
    const { target_namespace: ns, worker } = this.ctx.props;
    const release = admit(ns, worker, null);
    const t0 = Date.now();
    let status = null;
    try {
      // The caller's request name is the gateway's business, never the target's.
      const name = request.headers.get(REQUEST_ID);
      // Except under an outbound Worker (dispatch.js), within the dispatch namespace: the
      // target's fetches then carry the call's parameters and spend its budget.
      const keep = this.ctx.props.via && ns === this.ctx.props.namespace;
      if (name !== null && !keep) {
        request = new Request(request);
        request.headers.delete(REQUEST_ID);
      }
      const relay = await tailRelay(this.env, this.ctx, this.ctx.props, name);
      const response = relay ? await relay("fetch", [request])
        : await (await serviceTarget(this.env, this.ctx, this.ctx.props)).fetch(request);
      status = response.status;
      return response;
    } finally {
      count(this.env, this.ctx, ns, worker, status, status === null ? "exception" : "ok",
            Date.now() - t0);
      release();
    }
  }

  async call(method, args, name) {
    if (typeof method !== "string" || method === "fetch" || method.startsWith("__")) {
      throw new TypeError(`service binding: ${String(method)} is not an RPC method`);
    }
    const relay = await tailRelay(this.env, this.ctx, this.ctx.props, name);
    const target = relay ? { [method]: (...list) => relay(method, list) }
      : await serviceTarget(this.env, this.ctx, this.ctx.props);
    const { target_namespace: ns, worker } = this.ctx.props;
    const release = admit(ns, worker, null);
    const t0 = Date.now();
    let outcome = "exception";
    try {
      const result = await target[method](...(Array.isArray(args) ? args : []));
      outcome = "ok";
      return result;
    } finally {
      count(this.env, this.ctx, ns, worker, null, outcome, Date.now() - t0);
      release();
    }
  }
}

function refused(env, ctx, namespace, url, reason) {
  ctx.waitUntil(env.DATA.fetch("http://data/egress/refused", {
    method: "POST",
    headers: internalHeaders(env, { "content-type": "application/json" }),
    body: JSON.stringify({ namespace, host: url.hostname, reason }),
  }).then((r) => r.body && r.body.cancel(), () => {}));
  return new Error(`WDL egress policy of namespace ${namespace} refused ` +
    `${url.protocol}//${url.host}: ${reason}`);
}

// The tenant's globalOutbound: every fetch() it makes arrives here. The URL is
// judged by the namespace policy; the address it resolves to is judged by the
// `NET` network service (public addresses only), before any connection.
// workerd follows redirects in the tenant isolate, so each hop arrives here
// again as its own request and is decided again.
export class WdlEgress extends WorkerEntrypoint {
  async fetch(request) {
    const { namespace, worker } = this.ctx.props;
    const name = request.headers.get(REQUEST_ID);
    const over = spendSubrequest(name, namespace);
    if (over) throw new Error(over);
    if (request.headers.has(REQUEST_ID)) {
      request = new Request(request);  // the name is the platform's, not the destination's
      request.headers.delete(REQUEST_ID);
    }
    if (this.ctx.props.via) {
      // A dispatched user worker: its outbound Worker answers instead of the network.
      return throughOutbound(this.env, this.ctx, namespace, this.ctx.props.via, request,
                             name);
    }
    const entry = await lookup(this.env, namespace, worker);
    const policy = entry.missing ? { mode: "deny" } : (entry.egress || { mode: "public" });
    const url = new URL(request.url);
    const reason = egressRefusal(policy, url, this.env.EGRESS_ALLOW_LOOPBACK === "1");
    if (reason) throw refused(this.env, this.ctx, namespace, url, reason);
    try {
      return await this.env.NET.fetch(request);
    } catch (err) {
      throw new Error(`fetch to ${url.host} failed (the WDL egress policy of namespace ` +
        `${namespace} allows only public addresses): ${String(err && err.message || err)}`);
    }
  }

  // Every connect() of the tenant (and of its loader children): the same policy as
  // fetch(), through sockets.js. A dispatched user worker's outbound Worker sees only
  // fetch() (workerd hands it no socket), so its connect() is refused rather than let
  // past the dispatcher.
  async connect(socket) {
    const { namespace, worker } = this.ctx.props;
    if (this.ctx.props.via) {
      const { authority } = splitRequestName((await socket.opened).localAddress);
      return refuseSocket(this.env, this.ctx, socket, namespace, { mode: "deny" },
                          authority, "connect() of a dispatched user worker is not " +
                          "served (its outbound Worker sees fetch() only)");
    }
    const entry = await lookup(this.env, namespace, worker);
    const policy = entry.missing ? { mode: "deny" } : (entry.egress || { mode: "public" });
    return serveConnect(this.env, this.ctx, socket, namespace, policy,
                        entry.missing ? [] : entry.hyperdrive,
                        (name) => spendSubrequest(name, namespace));
  }
}

// --- entry ---------------------------------------------------------------------

// The platform's own paths, on every host and both sockets (the public one too): the
// internal token first, whatever the path (internal.js).
async function internal(request, env, ctx, url) {
  const refusal = internalRefusal(request, env);
  if (refusal) return refusal;
  if (url.pathname === "/__wdl/healthz") {
    return new Response(JSON.stringify({ ok: true, instance: env.INSTANCE,
                                         ...childStats(), ...roundStats() }) + "\n", {
      headers: { "content-type": "application/json", "cache-control": "no-store" },
    });
  }
  if (url.pathname === "/__wdl/scheduled") return scheduled(request, env, ctx);
  if (url.pathname === "/__wdl/workflow") return workflow(request, env, ctx);
  if (url.pathname === "/__wdl/queue") return queueBatch(request, env, ctx);
  if (url.pathname === "/__wdl/sync") return pushed(request, env);
  return reply(404, "not_found", "no such route");
}

async function handle(request, env, ctx) {
  const url = new URL(request.url);
  if (url.pathname.startsWith("/__wdl/")) return internal(request, env, ctx, url);
  const host = request.headers.get("host") || url.host;
  const domain = env.PLATFORM_DOMAIN;
  const bare = host.toLowerCase().split(":")[0];
  const onPlatform = bare.endsWith("." + domain);
  // The mark goes out with the round this request waits for (containment.js).
  const early = onPlatform || st.claims !== null
    ? resolveTarget(host, url.pathname, domain, onPlatform ? NO_CLAIMS : st.claims) : null;
  // A platform host routes without claims: a target it does not name now, it never will.
  if (onPlatform && early.code) return reply(404, early.code, early.message);
  let key = null;
  let slot;  // containment's key of the target, from its cached route (undefined: made there)
  let gated = false;  // on probation when marked: it runs behind the gate, whatever comes
  let marked = false;
  if (early && !early.code) {
    const known = st.routes.get(early.namespace);
    const hit = known && known.get(early.worker);
    if (hit && hit.version) {
      key = hit.marker;
      slot = hit.slot;
      gated = hit.probation === true;
      mark(early.namespace, early.worker, hit.version, slot, gated);
      marked = true;
    }
  }
  await fresh(env, ctx, key);
  const target = onPlatform && early && !early.code ? early
    : resolveTarget(host, url.pathname, domain, onPlatform ? NO_CLAIMS : await claims(env));
  if (target.code) return reply(404, target.code, target.message);
  if (target !== early) gated = false;
  if (!marked || early.namespace !== target.namespace || early.worker !== target.worker) {
    // Its target was not named in the round it waited for (its route was not cached, or
    // its host's claims were not, or changed): first its route, then one more round that
    // names it, before any tenant code. Names that route nowhere never reach a round:
    // they used to mark it (a round past MAX_TARGETS blames no one) or mark it
    // "unknown" (the same), so a spinning tenant escaped every strike by sending such
    // requests around each spin (tests/security/test_redteam_availability.py).
    const entry = await lookup(env, target.namespace, target.worker);
    if (entry.missing) {
      return reply(entry.missing.status || 404, entry.missing.code, entry.missing.message);
    }
    gated = entry.probation === true;
    slot = entry.slot;
    mark(target.namespace, target.worker, entry.version, slot, gated);
    await fresh(env, ctx);
  }
  const release = admit(target.namespace, target.worker, null, slot, gated);
  let endProbation = null;
  try {
    const entry = await lookup(env, target.namespace, target.worker);
    if (entry.missing) {
      return reply(entry.missing.status || 404, entry.missing.code, entry.missing.message);
    }
    if (!entry.workersDev && normalizeHost(host).endsWith("." + domain)) {
      // services/state/routing.py, off_namespace_url: the same answer as /resolve. On the
      // normalized host: `ns.<domain>.` and `NS.<domain>:80` are the namespace URL too.
      return reply(404, "workers_dev_disabled", `worker '${target.worker}' of namespace ` +
        `'${target.namespace}' is not served on the namespace URL (workers_dev = false): ` +
        "it is reached at its routes");
    }
    if (entry.assets) {
      // Static Assets answer before any tenant code (assets.js).
      const t0 = Date.now();
      const served = await routeAssets(env, target.namespace, target.worker, entry, request,
        target.path, url.pathname === target.path ? "" : "/" + url.pathname.split("/")[1]);
      if (served) {
        count(env, ctx, target.namespace, target.worker, served.status, "ok", Date.now() - t0,
              entry.counted);
        const at = normalizeHost(host);  // `_headers` may set cookies too
        return at.endsWith("." + domain) ? ownCookies(served, at) : served;
      }
    }
    nameVersion(target.namespace, target.worker, entry.version, entry.slot, gated);
    if (gated || entry.probation) {
      endProbation = await probationEnter(env, [target.namespace, target.worker,
                                                entry.version]);
    }
    const response = await invoke(env, ctx, url, request, target, entry);
    const servedAt = normalizeHost(host);
    return servedAt.endsWith("." + domain) ? ownCookies(response, servedAt) : response;
  } finally {
    release();
    if (endProbation) endProbation();
  }
}

// A Set-Cookie's Domain attribute (the last one counts, RFC 6265), lowercased without
// its leading and trailing dots; null for a host-only cookie.
function cookieDomain(cookie) {
  let domain = null;
  for (const part of cookie.split(";").slice(1)) {
    const eq = part.indexOf("=");
    if (eq < 0 || part.slice(0, eq).trim().toLowerCase() !== "domain") continue;
    domain = part.slice(eq + 1).trim().toLowerCase().replace(/^\.+/, "").replace(/\.+$/, "");
  }
  return domain || null;
}

// A namespace host's response keeps only cookies of that host (host-only, or its own
// Domain or under it). A browser takes `Domain=<platform domain>` from any namespace's
// host and sends it to every other one (the platform domain is not a public suffix):
// one tenant would plant or overwrite another's session cookies.
function ownCookies(response, host) {
  if (!response.headers.has("set-cookie")) return response;
  const cookies = response.headers.getSetCookie();
  const kept = cookies.filter((c) => {
    const domain = cookieDomain(c);
    return domain === null || domain === host || domain.endsWith("." + host);
  });
  if (kept.length === cookies.length) return response;
  console.warn(`wdl: ${host}: dropped ${cookies.length - kept.length} Set-Cookie for ` +
               "a domain other than the namespace's own host");
  const headers = new Headers(response.headers);
  headers.delete("set-cookie");
  for (const c of kept) headers.append("set-cookie", c);
  const init = { status: response.status, statusText: response.statusText, headers };
  if (response.webSocket) init.webSocket = response.webSocket;
  return new Response(response.body, init);
}

async function invoke(env, ctx, url, request, target, entry) {
  const stub = await stubFor(env, ctx, target.namespace, target.worker, entry);
  const inner = new Request(url.origin + target.path + url.search, request);
  const named = openRequest(target.namespace, target.worker, entry.limits);
  inner.headers.set(REQUEST_ID, named.id);  // replaces any a client sent
  const t0 = Date.now();
  try {
    const response = await withinWall(stub.getEntrypoint().fetch(inner), entry.limits,
                                      `${target.namespace}/${target.worker}`);
    count(env, ctx, target.namespace, target.worker, response.status, "ok", Date.now() - t0,
          entry.counted);
    return response;
  } catch (err) {
    count(env, ctx, target.namespace, target.worker, null, "exception", Date.now() - t0,
          entry.counted);
    const text = String(err && err.message || err);
    console.error(`wdl: ${entry.id}: ${text}`);
    if (text.includes("Failed to start Worker")) {
      return reply(502, "worker_start_failed",
        `version ${entry.version} of ${target.namespace}/${target.worker} failed to start`);
    }
    return reply(500, "worker_exception",
      `${target.namespace}/${target.worker} threw an exception`);
  } finally {
    named.close();
  }
}

export default {
  async fetch(request, env, ctx) {
    try {
      return await handle(request, env, ctx);
    } catch (err) {
      if (err instanceof PlatformError) return reply(err.status, err.code, err.message);
      console.error(`wdl gateway: ${err && err.stack || err}`);
      return reply(500, "gateway_error", "the gateway failed to handle the request");
    }
  },
};
