// Live tail: the tail consumer of every tenant version the gateway loads.
//
// fetchCode() hands LOADER.get() `tails: [ctx.exports.WdlTail({props})]`, so
// workerd calls WdlTail.tail(traceItems) after each invocation of that version
// (fetch, scheduled, RPC) with its outcome, console lines and exceptions. The
// props {namespace, worker, version} come from the platform's route, never from
// the tenant: a tenant cannot make its events appear under another worker.
//
// Events are normalized and bounded here, buffered in the gateway and posted to
// the data service (POST /tail) in batches: at most one post is in flight, and
// whatever arrives meanwhile goes in the next one, so under load the data
// service sees a few posts per round trip, not one per request. Best effort: a
// full buffer or a failed post drops events and the count travels with the
// next batch (wdl_tail_events_dropped_total{stage="gateway"}).
//
// Tail Workers (wrangler `tail_consumers`, docs/tail-workers.md): a version naming
// tail consumers is loaded with this consumer too (props.consumers, from the accepted
// version), and each invocation becomes a Cloudflare TraceItem (tailbatch.js) queued
// per consumer in a bounded outbox and handed to the consumer's tail() in batches,
// one call in flight per consumer. Never a tail worker's own events, and never the
// events of a tail() delivery (entrypoint TAIL_RUNNER): no loops.
import { WorkerEntrypoint } from "cloudflare:workers";
import { TailOutbox, traceItem } from "./tailbatch.js";
import { countTailConsumers } from "./metrics.js";

const EVENT_BUDGET = 16 * 1024;  // characters of console text and exceptions per event
const ENTRY_COST = 16;           // per log line / part, so many tiny lines also run out
const MAX_URL = 2048;
const MAX_BUFFER = 2000;         // events waiting for the data service
const MAX_BATCH = 500;
const POST_TIMEOUT_MS = 3000;
const DELIVER_TIMEOUT_MS = 30000;  // one tail(events) call of a tail worker
const TAIL_RUNNER = "__WdlTail";   // gateway.js: the platform's export running tail()

const outbox = new TailOutbox();
let invoker = null;  // (env, ctx, ns, consumer, events) => outcome; set by gateway.js

export function setTailInvoker(fn) {
  invoker = fn;
}

const buf = {
  queue: [],       // normalized events not yet posted
  queued: 0,       // events ever queued (sequence of the newest)
  taken: 0,        // events ever handed to a post
  dropped: 0,      // lost since the last post that reported them
  inflight: null,  // {startedAt, promise} of the post in flight
};

function requestId(request) {
  const headers = request && request.headers;
  if (!headers) return null;
  const value = typeof headers.get === "function" ? headers.get("x-wdl-request-id")
    : headers["x-wdl-request-id"];
  return typeof value === "string" && value.length <= 64 ? value : null;
}

function clip(text, room) {
  return text.length <= room ? text : text.slice(0, Math.max(0, room)) + "…";
}

// One console argument within `room` characters: JSON values as they are when
// they fit, otherwise as clipped text. [value, cost, clipped]
function part(value, room) {
  let text = value;
  if (typeof value !== "string") {
    try { text = JSON.stringify(value); } catch { text = undefined; }
    if (text === undefined) text = String(value);
    if (text.length <= room) {
      return [value === undefined ? null : value, text.length + ENTRY_COST, false];
    }
  }
  const v = clip(text, room);
  return [v, v.length + ENTRY_COST, v.length !== text.length];
}

function kindOf(event) {
  if (!event) return "other";
  if (event.request) return "fetch";
  // The gateway runs crons as RPC (getEntrypoint().scheduled()).
  if (event.rpcMethod !== undefined) return event.rpcMethod === "scheduled" ? "scheduled" : "rpc";
  if (event.cron !== undefined) return "scheduled";
  if (event.queue !== undefined) return "queue";
  if (event.mailFrom !== undefined) return "email";
  if (event.consumedEvents !== undefined) return "tail";
  if (event.scheduledTime !== undefined) return "alarm";
  return "other";
}

export function normalize(item, props, now) {
  const ev = item.event || null;
  const kind = item.entrypoint === TAIL_RUNNER ? "tail" : kindOf(ev);
  let room = EVENT_BUDGET;
  let truncated = Boolean(item.truncated);
  // Exceptions first: when the budget runs out, they matter more than logs.
  const exceptions = [];
  for (const e of item.exceptions || []) {
    if (room <= 0) { truncated = true; break; }
    const name = clip(String(e.name || "Error"), 200);
    const fullMessage = String(e.message ?? "");
    const message = clip(fullMessage, room);
    room -= name.length + message.length + ENTRY_COST;
    const fullStack = e.stack ? String(e.stack) : "";
    const stack = fullStack ? clip(fullStack, Math.max(room, 0)) : null;
    if (stack) room -= stack.length;
    if (message.length !== fullMessage.length || (stack && stack.length !== fullStack.length)) {
      truncated = true;
    }
    exceptions.push({ name, message, stack });
  }
  const logs = [];
  for (const log of item.logs || []) {
    if (room <= 0) { truncated = true; break; }
    const message = [];
    for (const p of Array.isArray(log.message) ? log.message : [log.message]) {
      if (room <= 0) { truncated = true; break; }
      const [v, cost, clipped] = part(p, room);
      message.push(v);
      room -= cost;
      if (clipped) truncated = true;
    }
    logs.push({ level: String(log.level || "log"), message,
                ts: typeof log.timestamp === "number" ? log.timestamp : null });
  }
  const request = ev && ev.request;
  const started = typeof item.eventTimestamp === "number" ? item.eventTimestamp : null;
  return {
    namespace: props.namespace,
    worker: props.worker,
    version: props.version,
    ts: started,
    kind,
    entrypoint: item.entrypoint || null,
    method: request ? String(request.method) : (kind === "rpc" ? String(ev.rpcMethod) : null),
    url: request ? clip(String(request.url), MAX_URL) : null,
    // The gateway's name for the request (budgets.js): what connects a tail line to
    // the platform's logs.
    request_id: requestId(request),
    status: ev && ev.response && typeof ev.response.status === "number"
      ? ev.response.status : null,
    outcome: String(item.outcome || "unknown"),
    // workerd reports cpuTime/wallTime as 0; the trace arrives when the invocation
    // is done, so its arrival time bounds the wall time from above (by ~1 ms).
    duration_ms: started === null ? null : Math.max(0, now - started),
    logs,
    exceptions,
    truncated,
  };
}

async function post(env, events, dropped) {
  try {
    const response = await env.DATA.fetch("http://data/tail", {
      method: "POST",
      headers: { "x-wdl-internal-token": env.INTERNAL_TOKEN,
                 "content-type": "application/json" },
      body: JSON.stringify({ events, dropped }),
      signal: AbortSignal.timeout(POST_TIMEOUT_MS),
    });
    if (response.body) await response.body.cancel();
    if (!response.ok) buf.dropped += events.length + dropped;
  } catch {
    buf.dropped += events.length + dropped;
  }
}

// Returns once every event queued up to `upTo` was handed to a post that settled.
// Like the barrier: a post is started only by an invocation that waits for it.
async function drain(env, upTo) {
  while (buf.taken < upTo) {
    const f = buf.inflight;
    if (f !== null && Date.now() - f.startedAt <= POST_TIMEOUT_MS + 500) {
      await f.promise;
      continue;
    }
    const events = buf.queue.splice(0, MAX_BATCH);
    const dropped = buf.dropped;
    buf.dropped = 0;
    buf.taken += events.length;
    const mine = { startedAt: Date.now(), promise: null };
    mine.promise = post(env, events, dropped).finally(() => {
      if (buf.inflight === mine) buf.inflight = null;
    });
    buf.inflight = mine;
    await mine.promise;
  }
}

async function deliver(env, ctx, q, events) {
  let outcome;
  try {
    if (invoker === null) throw new Error("no tail invoker");
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error("tail() timed out")), DELIVER_TIMEOUT_MS);
    });
    try {
      outcome = await Promise.race([invoker(env, ctx, q.namespace, q.consumer, events), late]);
    } finally {
      clearTimeout(timer);
    }
  } catch {
    outcome = "failed";  // the tail handler threw, or could not be called in time
  }
  if (outcome === "delivered") outbox.delivered += events.length;
  else outbox.drop(outcome, events.length);
}

// Like drain(): returns once every event queued for this consumer up to now went out
// in a call that settled; at most one call per consumer is in flight.
async function feed(env, ctx, namespace, consumer) {
  const q = outbox.queue(namespace, consumer);
  if (q === null) return;
  const upTo = q.queued;
  while (q.taken < upTo) {
    const f = q.inflight;
    if (f !== null && Date.now() - f.startedAt <= DELIVER_TIMEOUT_MS + 500) {
      await f.promise;
      continue;
    }
    const events = outbox.take(q);
    if (events.length === 0) break;
    const mine = { startedAt: Date.now(), promise: null };
    mine.promise = deliver(env, ctx, q, events).finally(() => {
      if (q.inflight === mine) q.inflight = null;
    });
    q.inflight = mine;
    await mine.promise;
  }
  outbox.release(q);
}

export class WdlTail extends WorkerEntrypoint {
  async tail(items) {
    const props = this.ctx.props;
    const now = Date.now();
    // Props of versions loaded before Tail Workers have no `live`: live tail only.
    const live = props.live !== false;
    const consumers = Array.isArray(props.consumers)
      ? props.consumers.filter((c) => typeof c === "string" && c !== props.worker) : [];
    for (const item of items || []) {
      const full = live && buf.queue.length >= MAX_BUFFER;
      if (full) buf.dropped += 1;
      // A tail() delivery's own trace never feeds a tail worker (no loops).
      const feeds = consumers.length > 0 && item && item.entrypoint !== TAIL_RUNNER;
      if (full && !feeds) continue;
      let event;
      try {
        event = normalize(item, props, now);
      } catch {
        if (live && !full) buf.dropped += 1;
        if (feeds) outbox.drop("invalid", consumers.length);
        continue;
      }
      if (live && !full) {
        buf.queue.push(event);
        buf.queued += 1;
      }
      if (feeds) {
        const trace = traceItem(item, event);
        const bytes = JSON.stringify(trace).length;
        for (const consumer of consumers) outbox.offer(props.namespace, consumer, trace, bytes);
      }
    }
    const work = consumers.map((c) => feed(this.env, this.ctx, props.namespace, c));
    if (live) work.push(drain(this.env, buf.queued));
    await Promise.all(work);
    if (consumers.length > 0) countTailConsumers(this.env, this.ctx, outbox.report());
  }
}
