// Routing state of a gateway process: the route and claim caches and how they
// are kept fresh (docs/dataplane.md, "Read-your-writes").
//
// Before routing, a request waits for a "barrier" - a /sync round trip to the
// state service that *started after the request arrived* and tells which cached
// namespaces/hosts changed. Concurrent requests share one round, so the state
// service sees at most ~2 syncs per round-trip time however high the request
// rate, and a promote acknowledged before a request arrived is always visible to
// it (read-your-writes). While the process holds a freshness lease, requests
// whose target the last round announced skip the barrier instead.
import { roundMarkers } from "./containment.js";
import { internalHeaders } from "./internal.js";
import { indexClaims } from "./routing.js";

const STATE = "http://state";
const SYNC_TIMEOUT_MS = 3000;
export const BUNDLE_TIMEOUT_MS = 15000;
// When the state service cannot be reached, cached routes are used for at most
// this long after the last successful sync; after that requests get a 503.
const STALE_BOUND_MS = 2000;
const MAX_CACHED_ROUTES = 100000;
export const NO_CLAIMS = indexClaims([]);  // platform hosts route without claims

export const st = {
  boot: "",
  epoch: -1,
  syncedAt: 0,
  claims: null,           // indexClaims(...): Map host -> owner's claims, or null when not loaded
  routes: new Map(),      // namespace -> Map worker -> {version, id} | {missing}
  cachedRoutes: 0,
  ready: new Set(),       // loader ids handed to LOADER with their code
  pending: new Map(),     // loader id -> {startedAt, promise} of a bundle fetch
  // Freshness lease (services/state/leases.py): until leaseUntil, requests whose
  // target the last round announced skip the barrier; the state service pushes
  // every change to this process (/__wdl/sync) before a write is acknowledged.
  leaseFrom: 0,
  leaseUntil: 0,
  leaseMs: 0,
  pushEpoch: -1,          // the newest epoch a push named (a lease needs an answer as new)
};
let arrivals = 0;   // requests that asked for a barrier so far
let leased = 0;     // requests that skipped it on the lease (reported by /__wdl/healthz)
let round = null;   // the sync round in flight: {seq, startedAt, promise}

export class PlatformError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function reply(status, code, message) {
  return new Response(JSON.stringify({ error: code, message }) + "\n", {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store" },
  });
}

export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new PlatformError(503, "state_unavailable",
      `${what} did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Every call carries the internal token (the state service answers nothing without it).
export async function stateGet(env, path, init) {
  let response;
  try {
    response = await env.STATE.fetch(STATE + path, init === undefined
      ? { headers: internalHeaders(env) }
      : { ...init, headers: internalHeaders(env, init.headers) });
  } catch (err) {
    throw new PlatformError(503, "state_unavailable", "the state service is unreachable");
  }
  const body = await response.json();
  if (!response.ok) {
    throw new PlatformError(response.status === 404 ? 404 : 502, body.code || "state_error",
      body.message || `state service answered ${response.status}`);
  }
  return body;
}

// --- the barrier -------------------------------------------------------------

function applyChanges(c) {
  if (c.boot !== st.boot) {
    st.leaseUntil = 0;
    st.pushEpoch = -1;
  }
  if (c.boot !== st.boot || c.flush) {
    st.routes.clear();
    st.cachedRoutes = 0;
    st.claims = null;
  } else {
    for (const ns of c.namespaces) {
      const byWorker = st.routes.get(ns);
      if (byWorker) {
        st.cachedRoutes -= byWorker.size;
        st.routes.delete(ns);
      }
    }
    if (c.hosts) st.claims = null;
  }
  // A late answer (rounds can overlap, pushes overtake them) never moves the epoch back.
  st.epoch = c.boot === st.boot ? Math.max(st.epoch, c.epoch) : c.epoch;
  st.boot = c.boot;
  st.syncedAt = Date.now();
}

// Marker keys ("ns/worker@version") of the targets the state service has in this
// process's last round: only their requests may skip the barrier, so a culprit
// is still always in the stuck process's last round (containment.js).
let safe = new Set();

function markerKeys(targets) {
  const out = new Set();
  for (const t of targets) if (t[2]) out.add(`${t[0]}/${t[1]}@${t[2]}`);
  return out;
}

function intersect(a, b) {
  const out = new Set();
  for (const k of a) if (b.has(k)) out.add(k);
  return out;
}

// POST /__wdl/sync {boot, since, epoch, flush, namespaces, hosts}, from the state
// service before it lets a write be acknowledged. Relative to `since`: a process
// that is not there (an answer it never got) gives its lease up instead.
// The caller's internal token is checked before (gateway.js).
export async function pushed(request, env) {
  if (request.method !== "POST") return reply(405, "method_not_allowed", "POST only");
  const c = await request.json();
  if (c.boot === st.boot && st.epoch >= c.since && st.epoch >= 0) {
    applyChanges(c);
  } else {
    st.leaseUntil = 0;
  }
  if (c.boot === st.boot) st.pushEpoch = Math.max(st.pushEpoch, c.epoch);
  return new Response(JSON.stringify({ epoch: st.epoch }), {
    headers: { "content-type": "application/json" } });
}

// The markers of this process's last round that the state service answered: a
// round whose markers are the same again (steady traffic to the same workers)
// sends `same=1` instead of the body, so the state service reads and parses
// nothing. Only when rounds did not overlap (an abandoned round may still
// arrive), and only to the boot that has them.
const NOT_SENT = { body: "", boot: "" };
let sent = NOT_SENT;
let rounds = 0;
let inflight = 0;

async function syncOnce(env) {
  const markers = roundMarkers(env.INSTANCE);
  const body = JSON.stringify(markers);
  const announced = markerKeys(markers.targets);
  safe = intersect(safe, announced);
  const seq = ++rounds;
  const alone = inflight === 0;
  const same = alone && body === sent.body && st.boot !== "" && st.boot === sent.boot;
  const startedAt = Date.now();
  let path = `/sync?boot=${st.boot}&epoch=${st.epoch}&instance=${encodeURIComponent(env.INSTANCE)}`;
  if (env.PUSH_ADDRESS) path += `&push=${encodeURIComponent(env.PUSH_ADDRESS)}`;
  let init = { method: "POST", headers: { "content-type": "application/json" }, body };
  if (same) {
    path += "&same=1";
    init = undefined;
  }
  inflight += 1;
  let c;
  try {
    c = await stateGet(env, path, init);
  } catch (err) {
    sent = NOT_SENT;  // it may or may not have arrived
    throw err;
  } finally {
    inflight -= 1;
  }
  // A restarted state service (new boot) did not have what `same` named.
  sent = alone && seq === rounds && (!same || c.boot === sent.boot)
    ? { body, boot: c.boot } : NOT_SENT;
  applyChanges(c);
  // The last round the state service saw is this one only if none overlapped it.
  if (seq === rounds && inflight === 0) safe = announced;
  if (c.lease_ms > 0 && c.boot === st.boot && c.epoch >= st.pushEpoch) {
    // Counted from before the round was sent: it ends before the state service's.
    st.leaseFrom = startedAt;
    st.leaseUntil = startedAt + c.lease_ms;
    st.leaseMs = c.lease_ms;
  }
}

// Each round is started by a request that itself waits for it (never from a
// promise reaction of another request, whose I/O context may be gone), and
// shared with every request that arrived before it started.
async function barrier(env, ctx) {
  const arrival = ++arrivals;
  for (;;) {
    const r = round;
    if (r !== null && Date.now() - r.startedAt > SYNC_TIMEOUT_MS) {
      round = null; // its request was cancelled before the round settled
      continue;
    }
    if (r === null) {
      const mine = { seq: arrivals, startedAt: Date.now(), promise: null };
      mine.promise = syncOnce(env).finally(() => { if (round === mine) round = null; });
      round = mine;
      // Other requests wait for this round: keep it running even if this
      // request's client goes away (its handler is then cancelled).
      ctx.waitUntil(mine.promise.catch(() => {}));
      return mine.promise;
    }
    if (r.seq >= arrival) return r.promise; // started after this request arrived
    await withTimeout(r.promise, SYNC_TIMEOUT_MS, "the state service").catch(() => {});
  }
}

// `key`: the request's marker key when its target and cached version are known.
export async function fresh(env, ctx, key = null) {
  const now = Date.now();
  if (key !== null && now < st.leaseUntil && now >= st.leaseFrom && safe.has(key)) {
    // Renew ahead of time, without making this request wait for it.
    if (round === null && st.leaseUntil - now < st.leaseMs / 2) {
      ctx.waitUntil(barrier(env, ctx).catch(() => {}));
    }
    leased += 1;
    return;
  }
  try {
    // Each request waits under its own timer even when it joins another request's
    // round: workerd cancels a request as hung ("would never generate a response")
    // when nothing of its own I/O context is pending, and a promise resolved from
    // another request's context does not count.
    await withTimeout(barrier(env, ctx), SYNC_TIMEOUT_MS, "the state service");
  } catch (err) {
    if (st.epoch >= 0 && Date.now() - st.syncedAt <= STALE_BOUND_MS) return;
    throw err instanceof PlatformError ? err
      : new PlatformError(503, "state_unavailable", "the state service is unreachable");
  }
}

// --- routes --------------------------------------------------------------------

export async function claims(env) {
  if (st.claims !== null) return st.claims;
  const epoch = st.epoch;
  const body = await stateGet(env, "/hosts");
  const map = indexClaims(body.claims);
  if (body.boot === st.boot && body.epoch >= st.epoch && st.epoch === epoch) st.claims = map;
  return map;
}

export async function lookup(env, ns, worker) {
  const byWorker = st.routes.get(ns);
  const hit = byWorker && byWorker.get(worker);
  if (hit) return hit;
  const body = await stateGet(env,
    `/route?ns=${encodeURIComponent(ns)}&worker=${encodeURIComponent(worker)}`);
  const entry = body.route
    ? { version: body.route.version, id: body.route.id, egress: body.route.egress || null,
        grants: body.route.grants || [], probation: body.route.probation === true,
        limits: body.route.limits || null, tail: body.route.tail === true,
        // `workers_dev = false`: not served on the namespace URL (gateway.js, handle).
        workersDev: body.route.workers_dev !== false,
        assets: body.route.assets || null,  // Static Assets (assets.js)
        // The Hyperdrive config ids the version binds (sockets.js routes them to the pooler).
        hyperdrive: body.route.hyperdrive || [],
        // Made once per route, not per request: the lease's marker key
        // (markerKeys) and the metrics aggregate's key (metrics.js).
        marker: `${ns}/${worker}@${body.route.version}`, counted: ns + "\0" + worker,
        // containment.js's key of the target.
        slot: ns + "/" + worker }
    : { missing: body.missing };
  // Keep it only if no invalidation newer than the answer reached us meanwhile.
  if (body.boot === st.boot && body.epoch >= st.epoch) {
    if (st.cachedRoutes >= MAX_CACHED_ROUTES) {
      st.routes.clear();
      st.cachedRoutes = 0;
    }
    let m = st.routes.get(ns);
    if (!m) st.routes.set(ns, (m = new Map()));
    if (!m.has(worker)) st.cachedRoutes += 1;
    m.set(worker, entry);
  }
  return entry;
}

export function dropRoute(ns, worker) {
  const m = st.routes.get(ns);
  if (m && m.delete(worker)) st.cachedRoutes -= 1;
}

// What /__wdl/healthz reports about the rounds and the lease.
export function roundStats() {
  return { rounds, leased, lease_ms_left: Math.max(0, st.leaseUntil - Date.now()) };
}

