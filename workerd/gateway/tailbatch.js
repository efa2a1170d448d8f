// Tail Workers: the gateway's outbox of TraceItems waiting for a tail consumer's tail().
//
// Pure data structures (no workerd imports: tests/unit/test_tail_outbox.py runs them
// under node). One queue per (namespace, consumer), each bounded by events AND bytes,
// the namespace's queues together by a share of the gateway's bytes (so one
// namespace's flood cannot take the room every other namespace's tail workers need),
// and the whole outbox by bytes and consumers. What does not fit is dropped and
// counted, never waited for: the producer's invocation is over before its trace
// arrives, and a tail worker that falls behind loses events, it does not slow anyone.

export const LIMITS = {
  queueEvents: 1000,                 // waiting for one consumer
  queueBytes: 2 * 1024 * 1024,       // (JSON length of the TraceItems)
  namespaceBytes: 4 * 1024 * 1024,   // a namespace's consumers together
  totalBytes: 16 * 1024 * 1024,      // the gateway process
  consumers: 1000,                   // (namespace, consumer) queues
  batchEvents: 100,                  // one tail(events) call
  batchBytes: 256 * 1024,
};

export class TailOutbox {
  constructor(limits = LIMITS) {
    this.limits = { ...LIMITS, ...limits };
    this.queues = new Map();   // key -> {namespace, consumer, items: [[item, bytes]], bytes, queued, taken, inflight}
    this.nsBytes = new Map();  // namespace -> bytes queued
    this.bytes = 0;
    this.dropped = {};         // reason -> events, not yet reported
    this.delivered = 0;        // not yet reported
  }

  drop(reason, n = 1) {
    if (n > 0) this.dropped[reason] = (this.dropped[reason] || 0) + n;
  }

  queue(namespace, consumer) {
    return this.queues.get(namespace + "\0" + consumer) || null;
  }

  // Queues `item` (a TraceItem, `bytes` its JSON length) for `consumer` of
  // `namespace`; false (and counted as "overflow") when a bound says no.
  offer(namespace, consumer, item, bytes) {
    const L = this.limits;
    const key = namespace + "\0" + consumer;
    let q = this.queues.get(key);
    if (!q) {
      if (this.queues.size >= L.consumers) {
        this.drop("overflow");
        return false;
      }
      q = { namespace, consumer, items: [], bytes: 0, queued: 0, taken: 0, inflight: null };
      this.queues.set(key, q);
    }
    const ns = this.nsBytes.get(namespace) || 0;
    if (q.items.length >= L.queueEvents || q.bytes + bytes > L.queueBytes ||
        ns + bytes > L.namespaceBytes || this.bytes + bytes > L.totalBytes) {
      this.drop("overflow");
      return false;
    }
    q.items.push([item, bytes]);
    q.bytes += bytes;
    q.queued += 1;
    this.nsBytes.set(namespace, ns + bytes);
    this.bytes += bytes;
    return true;
  }

  // The next batch of `q`: at most batchEvents events and batchBytes bytes (one
  // event always, so an event larger than a batch still goes out on its own).
  take(q) {
    const L = this.limits;
    const out = [];
    let bytes = 0;
    while (q.items.length > 0 && out.length < L.batchEvents) {
      const [item, size] = q.items[0];
      if (out.length > 0 && bytes + size > L.batchBytes) break;
      q.items.shift();
      out.push(item);
      bytes += size;
    }
    q.bytes -= bytes;
    q.taken += out.length;
    this.bytes -= bytes;
    const ns = (this.nsBytes.get(q.namespace) || 0) - bytes;
    if (ns > 0) this.nsBytes.set(q.namespace, ns);
    else this.nsBytes.delete(q.namespace);
    return out;
  }

  // Forgets an empty queue with nothing in flight (bounded memory for idle consumers).
  release(q) {
    const key = q.namespace + "\0" + q.consumer;
    if (q.items.length === 0 && q.inflight === null && this.queues.get(key) === q) {
      this.queues.delete(key);
    }
  }

  // {delivered, dropped: {reason: n}} since the last report, then zero.
  report() {
    const out = { delivered: this.delivered, dropped: this.dropped };
    this.delivered = 0;
    this.dropped = {};
    return out;
  }
}

// --- the TraceItem a tail worker gets ---------------------------------------------

const REDACTED = new Set(["authorization", "cookie", "set-cookie", "proxy-authorization"]);
const MAX_HEADERS = 64;
const MAX_HEADER_BYTES = 8 * 1024;

function headersOf(raw) {
  const out = {};
  if (!raw || typeof raw !== "object") return out;
  const entries = typeof raw.entries === "function" && !Array.isArray(raw)
    ? [...raw.entries()] : Object.entries(raw);
  let n = 0;
  let room = MAX_HEADER_BYTES;
  for (const [name, value] of entries) {
    if (n >= MAX_HEADERS || room <= 0) break;
    const key = String(name).toLowerCase();
    // workerd redacts these in a TraceItem already; kept so whatever shape arrives.
    const text = REDACTED.has(key) ? "REDACTED" : String(value);
    room -= key.length + text.length;
    if (room < 0) break;
    out[key] = text;
    n += 1;
  }
  return out;
}

function eventOf(ev, normalized) {
  if (!ev) return null;
  if (ev.request) {
    const out = { request: { url: normalized.url, method: normalized.method,
                             headers: headersOf(ev.request.headers) } };
    if (normalized.status !== null) out.response = { status: normalized.status };
    return out;
  }
  // The gateway runs crons as RPC (`scheduled()` on the entrypoint): the cron string is
  // not in that trace, so a tail worker sees `cron: ""` (docs/tail-workers.md).
  if (normalized.kind === "scheduled") {
    return { cron: typeof ev.cron === "string" ? ev.cron : "",
             scheduledTime: typeof ev.scheduledTime === "number" ? ev.scheduledTime
               : normalized.ts };
  }
  if (normalized.kind === "queue") {
    return { queue: String(ev.queue), batchSize: Number(ev.batchSize) || 0 };
  }
  if (normalized.kind === "alarm") return { scheduledTime: ev.scheduledTime };
  if (normalized.kind === "rpc") return { rpcMethod: String(ev.rpcMethod) };
  return null;
}

// Cloudflare's TraceItem, built from what workerd reported (`item`) and the gateway's
// bounded form of it (`normalized`, tail.js): the same size budget applies.
export function traceItem(item, normalized) {
  const ts = normalized.ts;
  const raw = (item && Array.isArray(item.exceptions)) ? item.exceptions : [];
  const when = (i) => (raw[i] && typeof raw[i].timestamp === "number" ? raw[i].timestamp : ts);
  return {
    scriptName: normalized.worker,
    entrypoint: normalized.entrypoint || undefined,
    scriptVersion: { id: normalized.version },
    event: eventOf(item && item.event, normalized),
    eventTimestamp: ts,
    logs: normalized.logs.map((l) => ({ message: l.message, level: l.level,
                                         timestamp: l.ts === null ? ts : l.ts })),
    exceptions: normalized.exceptions.map((e, i) => ({
      name: e.name, message: e.message, timestamp: when(i),
      ...(e.stack ? { stack: e.stack } : {}) })),
    diagnosticsChannelEvents: [],
    scriptTags: [],
    outcome: normalized.outcome,
    executionModel: "stateless",
    truncated: normalized.truncated,
    cpuTime: 0,
    wallTime: normalized.duration_ms === null ? 0 : normalized.duration_ms,
  };
}
