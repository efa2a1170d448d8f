// The Queues producer API for tenant code (Queue: send, sendBatch), over the platform's
// WdlQueue stub. Delivered to the tenant isolate as `__wdl/queues.js`; the shim wraps
// each raw queue stub in env with `wrapQueue(stub, name)`. Serialisation and the checks
// follow workerd's own Queue binding as Miniflare runs it (the behaviour reference):
// TypeErrors for what workerd refuses locally, `Error("Queue send failed: …")` with
// Miniflare's words for the limits. Self-contained: no imports.

const MAX_MESSAGE_BYTES = 128000;
const MAX_BATCH_MESSAGES = 100;
const MAX_BATCH_BYTES = 256000;
const TYPES = new Set(["json", "text", "bytes", "v8"]);
const utf8 = new TextEncoder();

function toBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

function typeName(v) {
  if (v === null) return "null";
  if (typeof v !== "object") return typeof v;
  return v.constructor && v.constructor.name ? v.constructor.name : "object";
}

// "v8" (structured clone) bodies travel as tagged JSON: what JSON cannot carry is tagged
// (docs/queues.md; the gateway's queues.js untags it for the consumer).
function tag(v) {
  if (v === undefined) return { $wdl: "undefined" };
  if (typeof v === "bigint") return { $wdl: "bigint", v: v.toString() };
  if (typeof v === "number" && !Number.isFinite(v)) return { $wdl: "num", v: String(v) };
  if (typeof v === "function" || typeof v === "symbol") {
    throw new DOMException(`${String(v)} could not be cloned.`, "DataCloneError");
  }
  if (v === null || typeof v !== "object") return v;
  if (v instanceof Date) return { $wdl: "date", v: v.getTime() };
  if (v instanceof Map) return { $wdl: "map", v: [...v].map(([k, x]) => [tag(k), tag(x)]) };
  if (v instanceof Set) return { $wdl: "set", v: [...v].map(tag) };
  if (v instanceof ArrayBuffer) return { $wdl: "bytes", v: toBase64(new Uint8Array(v)) };
  if (ArrayBuffer.isView(v)) {
    return { $wdl: "u8", v: toBase64(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)) };
  }
  if (Array.isArray(v)) return v.map(tag);
  const out = {};
  for (const [k, x] of Object.entries(v)) out[k] = tag(x);
  return "$wdl" in v ? { $wdl: "obj", v: out } : out;
}

function serialise(body, contentType) {
  const type = contentType === undefined ? "json" : String(contentType);
  if (!TYPES.has(type)) throw new TypeError(`Unsupported queue message content type: ${type}`);
  if (body === undefined) throw new TypeError("Message body cannot be undefined");
  let bytes;
  if (type === "text") {
    if (typeof body !== "string") {
      throw new TypeError(`Content Type "text" requires a value of type string, but received: ${typeName(body)}`);
    }
    bytes = utf8.encode(body);
  } else if (type === "bytes") {
    if (!ArrayBuffer.isView(body) && !(body instanceof ArrayBuffer)) {
      throw new TypeError(`Content Type "bytes" requires a value of type ArrayBufferView, but received: ${typeName(body)}`);
    }
    bytes = body instanceof ArrayBuffer ? new Uint8Array(body)
      : new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  } else if (type === "json") {
    const text = JSON.stringify(body);
    if (text === undefined) throw new TypeError(`${typeName(body)} cannot be serialised as JSON`);
    bytes = utf8.encode(text);
  } else {
    bytes = utf8.encode(JSON.stringify(tag(body)));
  }
  return { bytes, type };
}

function delayOf(options, op) {
  if (options === undefined || options === null || options.delaySeconds === undefined) {
    return undefined;
  }
  const d = Number(options.delaySeconds);
  if (!Number.isFinite(d) || d < 0) {
    throw new Error(`Queue ${op} failed: delaySeconds must be a non-negative number`);
  }
  return Math.floor(d);
}

function failed(op, error) {
  return new Error(`Queue ${op} failed: ${error.message}`);
}

const SENT = () => ({ metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } });

export function wrapQueue(stub) {
  return Object.freeze({
    async send(body, options = {}) {
      const { bytes, type } = serialise(body, options && options.contentType);
      if (bytes.byteLength > MAX_MESSAGE_BYTES) {
        throw failed("send", { message: `message length of ${bytes.byteLength} bytes exceeds limit of ${MAX_MESSAGE_BYTES}` });
      }
      const delaySeconds = delayOf(options, "send");
      const error = await stub.send([{ body: toBase64(bytes), contentType: type, delaySeconds }]);
      if (error) throw failed("send", error.error);
      return SENT();
    },
    async sendBatch(messages, options = {}) {
      if (messages === null || typeof messages !== "object" ||
          typeof messages[Symbol.iterator] !== "function" || typeof messages === "string") {
        throw new TypeError("Failed to execute 'sendBatch' on 'WorkerQueue': parameter 1 is not of type 'Sequence'.");
      }
      const list = [...messages];
      if (list.length === 0) throw new TypeError("sendBatch() requires at least one message");
      const wire = [];
      let total = 0;
      for (const m of list) {
        const { bytes, type } = serialise(m && m.body, m && m.contentType);
        if (bytes.byteLength > MAX_MESSAGE_BYTES) {
          throw failed("sendBatch", { message: `message length of ${bytes.byteLength} bytes exceeds limit of ${MAX_MESSAGE_BYTES}` });
        }
        total += bytes.byteLength;
        wire.push({ body: toBase64(bytes), contentType: type, delaySeconds: delayOf(m, "sendBatch") });
      }
      if (list.length > MAX_BATCH_MESSAGES) {
        throw failed("sendBatch", { message: `batch message count of ${list.length} exceeds limit of ${MAX_BATCH_MESSAGES}` });
      }
      if (total > MAX_BATCH_BYTES) {
        throw failed("sendBatch", { message: `batch size of ${total} bytes exceeds limit of ${MAX_BATCH_BYTES}` });
      }
      const error = await stub.send(wire, { delaySeconds: delayOf(options, "sendBatch") });
      if (error) throw failed("sendBatch", error.error);
      return SENT();
    },
  });
}
