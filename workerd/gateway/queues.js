// WdlQueue: the gateway entrypoint behind every tenant queue producer binding, and the
// decoding of stored messages for a consumer's queue() (`decodeMessages`).
//
// Props ({namespace, queue, worker, version, delay}) are set by the platform from the
// accepted version, so a tenant can only send to its own namespace's queue. `send`
// takes messages the tenant wrapper (workerd/tenant/queues.js) already serialised and
// checked against Cloudflare's limits, and answers only after the queue service had
// the message log acknowledge them (Kafka acks=all, or the embedded SQLite commit).
// Refusals come back as `{error: {status, message}}`; the wrapper throws them.

import { WorkerEntrypoint } from "cloudflare:workers";
import { decodeValue, fromB64 as fromBase64 } from "./values.js";

const UNREACHABLE = { error: { status: 503, message: "queue service unavailable" } };

export class WdlQueue extends WorkerEntrypoint {
  // messages: [{body: base64, contentType, delaySeconds?}]; options: {delaySeconds?}
  async send(messages, options = {}) {
    const { namespace, queue, delay } = this.ctx.props;
    let r;
    try {
      r = await this.env.QUEUES.fetch("http://queues/send", {
        method: "POST",
        headers: { "content-type": "application/json",
                   "x-wdl-internal-token": this.env.INTERNAL_TOKEN },
        body: JSON.stringify({ namespace, queue, delay: delay || "",
                               delaySeconds: options.delaySeconds, messages }),
      });
    } catch {
      return UNREACHABLE;
    }
    if (r.ok) return null;
    let message = r.statusText || "Internal Server Error";
    try {
      const body = await r.json();
      if (body && typeof body.message === "string") message = body.message;
    } catch {
      // not from the queue service: keep the status text
    }
    return { error: { status: r.status, message } };
  }
}

// --- consumer side: stored bytes -> the values queue() sees -----------------------

function decodeBody(contentType, b64) {
  const bytes = fromBase64(b64);
  if (contentType === "bytes") return bytes.buffer;
  const text = new TextDecoder().decode(bytes);
  if (contentType === "text") return text;
  if (contentType === "v8") return decodeValue(text);
  return JSON.parse(text);
}

// [{id, timestamp (ms), body (base64), contentType, attempts}] -> {messages:
// ServiceBindingQueueMessage[], undecodable: [{id, error}]}. A body that cannot be
// decoded (tenant code can store any text as a `v8` body, nested as deep as 128 kB
// allows: the decoder's recursion then ends in a RangeError) is left out and named,
// so the consumer counts an attempt for it alone.
export function decodeMessages(list) {
  const messages = [];
  const undecodable = [];
  for (const m of Array.isArray(list) ? list : []) {
    try {
      messages.push({ id: String(m.id), timestamp: new Date(Number(m.timestamp)),
                      body: decodeBody(m.contentType, m.body), attempts: Number(m.attempts) });
    } catch (err) {
      undecodable.push({ id: String(m && m.id),
        error: `${err && err.name || "Error"}: ${String(err && err.message || err)}`.slice(0, 200) });
    }
  }
  return { messages, undecodable };
}
