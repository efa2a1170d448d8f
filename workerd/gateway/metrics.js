// Request metrics, counted by the gateway itself (services/data/invocations.py).
//
// Every invocation of a tenant worker is counted here - status class, outcome,
// wall time measured around the call - into an aggregate per (namespace,
// worker), and the aggregate goes to the data service in one POST at most about
// once a second. So metrics cost no trace per request (tail consumers are loaded
// only where someone tails, services/state/tails.py) and never count twice.
//
// The flush runs in a request's ctx.waitUntil and waits there for its turn, so
// the last counts of a burst go out without another request. One flush is in
// flight at a time; a flush that failed loses its counts, and how many
// invocations that was travels with the next one
// (wdl_gateway_invocations_dropped_total).

// services/data/metrics.py DURATION_BUCKETS (seconds), as milliseconds; then +Inf.
const BOUNDS_MS = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000];
const FLUSH_EVERY_MS = 1000;
const POST_TIMEOUT_MS = 3000;
const MAX_WORKERS = 2000;  // (namespace, worker) pairs in one aggregate

let agg = new Map();       // "ns\0worker" -> {namespace, worker, requests: Map, ...}
let dropped = 0;           // invocations counted but not delivered, not yet reported
let flushing = null;       // {at}: the flush loop running and when it last moved, or null
let lastFlush = 0;
// Tail Workers' deliveries (tail.js) since the last flush: {delivered, dropped: {reason: n}}.
let tails = { delivered: 0, dropped: {}, any: false };

// Rows of an aggregate: status class (1xx..5xx, then "none") x outcome, counted
// in a fixed array so that a request allocates nothing here.
const CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];
const OUTCOMES = ["ok", "exception"];

function row(status, outcome) {
  const c = typeof status === "number" && status >= 100 && status <= 599
    ? Math.floor(status / 100) - 1 : 5;
  return c * 2 + (outcome === "ok" ? 0 : 1);
}

// `status`: the HTTP status (null for calls without one); `outcome`: "ok" | "exception".
// `key`: namespace + "\0" + worker when the caller has it already (the route entry's).
export function count(env, ctx, namespace, worker, status, outcome, ms,
                      key = namespace + "\0" + worker) {
  let w = agg.get(key);
  if (!w) {
    if (agg.size >= MAX_WORKERS) {
      dropped += 1;
      return;
    }
    w = { namespace, worker, requests: new Array(CLASSES.length * 2).fill(0), exceptions: 0,
          buckets: new Array(BOUNDS_MS.length + 1).fill(0), sum: 0, websockets: 0 };
    agg.set(key, w);
  }
  w.requests[row(status, outcome)] += 1;
  if (outcome !== "ok") w.exceptions += 1;
  // A 101 from a tenant is a WebSocket it accepted (workerd allows 101 only with one);
  // the socket then runs in workerd, past the gateway's code, so opens are counted here.
  if (status === 101) w.websockets += 1;
  let i = 0;
  while (i < BOUNDS_MS.length && ms > BOUNDS_MS[i]) i++;
  w.buckets[i] += 1;
  w.sum += ms / 1000;
  kick(env, ctx);
}

function kick(env, ctx) {
  // A loop that stopped moving (its request's context was cancelled) no longer counts.
  if (flushing === null || Date.now() - flushing.at > FLUSH_EVERY_MS + POST_TIMEOUT_MS + 1000) {
    const mine = { at: Date.now() };
    flushing = mine;
    ctx.waitUntil(flushLoop(env, mine));
  }
}

// Tail Workers' outcomes (tail.js: TailOutbox.report()), sent with the next flush.
export function countTailConsumers(env, ctx, report) {
  const dropped = Object.entries(report.dropped || {});
  if (!report.delivered && dropped.length === 0) return;
  tails.delivered += report.delivered || 0;
  for (const [reason, n] of dropped) tails.dropped[reason] = (tails.dropped[reason] || 0) + n;
  tails.any = true;
  kick(env, ctx);
}

function take() {
  const workers = [];
  let n = 0;
  for (const w of agg.values()) {
    const requests = [];
    for (let i = 0; i < w.requests.length; i++) {
      const c = w.requests[i];
      if (c === 0) continue;
      requests.push([CLASSES[i >> 1], OUTCOMES[i & 1], c]);
      n += c;
    }
    const entry = { namespace: w.namespace, worker: w.worker, requests,
                    exceptions: w.exceptions, buckets: w.buckets, sum: w.sum };
    if (w.websockets) entry.websockets = w.websockets;
    workers.push(entry);
  }
  agg = new Map();
  return { workers, n };
}

async function flushLoop(env, mine) {
  try {
    // Lost counts alone do not keep it going: they go out with the next counts.
    while (flushing === mine && (agg.size > 0 || tails.any)) {
      const wait = lastFlush + FLUSH_EVERY_MS - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      if (flushing !== mine) return;
      lastFlush = mine.at = Date.now();
      const { workers, n } = take();
      const lost = dropped;
      dropped = 0;
      const tailCounts = tails;
      tails = { delivered: 0, dropped: {}, any: false };
      try {
        const response = await env.DATA.fetch("http://data/invocations", {
          method: "POST",
          headers: { "x-wdl-internal-token": env.INTERNAL_TOKEN,
                     "content-type": "application/json" },
          body: JSON.stringify({ workers, dropped: lost,
                                 ...(tailCounts.any ? { tail_consumers: {
                                   delivered: tailCounts.delivered,
                                   dropped: tailCounts.dropped } } : {}) }),
          signal: AbortSignal.timeout(POST_TIMEOUT_MS),
        });
        if (response.body) await response.body.cancel();
        if (!response.ok) dropped += n + lost;
      } catch {
        dropped += n + lost;
      }
      mine.at = Date.now();
    }
  } finally {
    if (flushing === mine) flushing = null;
  }
}
