// The Queues producer API for tenant code (Queue: send, sendBatch), over the platform's
// WdlQueue stub. Delivered to the tenant isolate as `__wdl/queues.js`; the shim wraps
// each raw queue stub in env with `wrap(stub, name)`. Serialisation and the checks
// follow workerd's own Queue binding as Miniflare runs it (the behaviour reference):
// TypeErrors for what workerd refuses locally, `Error("Queue send failed: …")` with
// Miniflare's words for the limits. `v8` bodies are structured-cloned by values.js.
import { encodeValue, toB64 as toBase64 } from "./values.js";

const MAX_MESSAGE_BYTES = 128000;
const MAX_BATCH_MESSAGES = 100;
const MAX_BATCH_BYTES = 256000;
const TYPES = new Set(["json", "text", "bytes", "v8"]);
const utf8 = new TextEncoder();

function typeName(v) {
  if (v === null) return "null";
  if (typeof v !== "object") return typeof v;
  return v.constructor && v.constructor.name ? v.constructor.name : "object";
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
    bytes = utf8.encode(encodeValue(body));
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

export function wrap(stub) {
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
