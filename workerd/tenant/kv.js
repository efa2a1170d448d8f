// The Workers KV API for tenant code (KVNamespace), over the platform's WdlKv stub.
//
// Delivered to the tenant isolate as `__wdl/kv.js`; the shim replaces each raw
// KV stub in env with `wrap(stub, name)`. Argument handling and refusals follow
// workerd's own KV binding as Miniflare runs it (the behaviour reference): the
// checks workerd makes locally throw TypeErrors here too, and refusals the KV
// service makes surface as `Error("KV <OP> failed: <status> <message>")` with
// Miniflare's messages (the data routes produce them; services/kv/limits.py).
// Self-contained: no imports.

const MAX_VALUE_BYTES = 25 * 1024 * 1024;
const MIN_CACHE_TTL = 30;
const TYPES = new Set(["text", "arrayBuffer", "json", "stream"]);
const BAD_TYPE = 'Unknown response type. Possible types are "text", "arrayBuffer", "json", and "stream".';
const BAD_VALUE = "KV put() accepts only strings, ArrayBuffers, ArrayBufferViews, and ReadableStreams as values.";
const utf8 = new TextEncoder();

function failed(op, error) {
  return new Error(`KV ${op} failed: ${error.status} ${error.message}`);
}

// workerd takes key names as USVStrings: coerced with String(), lone surrogates
// replaced (they could not be sent as UTF-8 anyway).
function keyName(key) {
  const name = String(key);
  return typeof name.toWellFormed === "function" ? name.toWellFormed() : name;
}

function checkKey(name) {
  if (name === "") throw new TypeError("Key name cannot be empty.");
  if (name === "." || name === "..") throw new TypeError(`"${name}" is not allowed as a key name.`);
}

function checkKeyLength(op, name) {
  const size = utf8.encode(name).byteLength;
  if (size > 512) {
    throw failed(op, { status: 414, message: `UTF-8 encoded length of ${size} exceeds key length limit of 512.` });
  }
}

function getOptions(options) {
  // get(key, "json") or get(key, {type, cacheTtl}); a missing type is "text".
  if (options === undefined || options === null) return { type: "text" };
  if (typeof options === "string") return { type: options };
  if (typeof options !== "object") return { type: String(options) };
  return { type: options.type === undefined ? "text" : String(options.type), cacheTtl: options.cacheTtl };
}

function checkCacheTtl(op, cacheTtl) {
  // Accepted and ignored: there is no edge cache to tune (docs/compatibility.md).
  if (cacheTtl !== undefined && (isNaN(cacheTtl) || cacheTtl < MIN_CACHE_TTL)) {
    throw failed(op, { status: 400, message: `Invalid cache_ttl of ${cacheTtl}. Cache TTL must be at least ${MIN_CACHE_TTL}.` });
  }
}

function parseMetadata(text) {
  return text === null || text === undefined ? null : JSON.parse(text);
}

function shape(type, value) {
  return type === "json" ? JSON.parse(value) : value;
}

function putValue(value) {
  if (typeof value === "string") return { body: value, size: utf8.encode(value).byteLength };
  if (value instanceof ArrayBuffer) return { body: value, size: value.byteLength };
  if (ArrayBuffer.isView(value)) {
    // Only the view's bytes: a copy, so the tenant may reuse its buffer at once.
    const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength).slice();
    return { body: bytes.buffer, size: bytes.byteLength };
  }
  if (value instanceof ReadableStream) return { body: value, size: undefined };
  if (value !== null && (typeof value === "object" || typeof value === "function")) {
    throw new TypeError(BAD_VALUE);
  }
  const text = String(value);
  return { body: text, size: utf8.encode(text).byteLength };
}

class KVNamespace {
  #stub;
  #name;

  constructor(stub, name) {
    this.#stub = stub;
    this.#name = name;
  }

  get(key, options) {
    if (Array.isArray(key)) return this.#getBulk(key, options, false);
    return this.#get(key, options, false);
  }

  getWithMetadata(key, options) {
    if (Array.isArray(key)) return this.#getBulk(key, options, true);
    return this.#get(key, options, true);
  }

  async #get(key, options, withMetadata) {
    const name = keyName(key);
    checkKey(name);
    const { type, cacheTtl } = getOptions(options);
    checkKeyLength("GET", name);
    checkCacheTtl("GET", cacheTtl);
    // workerd checks the type once it has the response, so a missing key is null
    // whatever the type: ask for text when the type is unknown, refuse it after.
    const known = TYPES.has(type);
    const got = await this.#stub.get(name, known ? type : "text");
    if (got && got.error) throw failed("GET", got.error);
    if (got === null) return withMetadata ? { value: null, metadata: null, cacheStatus: null } : null;
    if (!known) throw new TypeError(BAD_TYPE);
    const value = shape(type, got.value);
    return withMetadata ? { value, metadata: parseMetadata(got.metadata), cacheStatus: null } : value;
  }

  async #getBulk(keys, options, withMetadata) {
    const { type, cacheTtl } = getOptions(options);
    if (type !== "text" && type !== "json") {
      throw failed("GET_BULK", { status: 400, message: `"${type}" is not a valid type. Use "json" or "text"` });
    }
    if (keys.length > 100) throw failed("GET_BULK", { status: 400, message: "You can request a maximum of 100 keys" });
    if (keys.length < 1) throw failed("GET_BULK", { status: 400, message: "You must request a minimum of 1 key" });
    const names = keys.map(keyName);
    checkCacheTtl("GET_BULK", cacheTtl);
    const got = await this.#stub.getBulk(names, withMetadata);
    if (got.error) throw failed("GET_BULK", got.error);
    const out = new Map();
    for (const name of names) {
      const entry = got.entries[name];
      if (entry === null || entry === undefined) {
        out.set(name, null);
        continue;
      }
      let value = entry[0];
      if (type === "json") {
        try {
          value = JSON.parse(value);
        } catch {
          throw failed("GET_BULK", { status: 400, message: "At least one of the requested keys corresponds to a non-json value" });
        }
      }
      out.set(name, withMetadata ? { value, metadata: parseMetadata(entry[1]) } : value);
    }
    return out;
  }

  async put(key, value, options) {
    const name = keyName(key);
    checkKey(name);
    const { body, size } = putValue(value);
    const opts = options ?? {};
    const sent = {};
    if (opts.expirationTtl !== undefined && opts.expirationTtl !== null) sent.expirationTtl = Number(opts.expirationTtl);
    if (opts.expiration !== undefined && opts.expiration !== null) sent.expiration = Number(opts.expiration);
    if (opts.metadata !== undefined && opts.metadata !== null) sent.metadata = JSON.stringify(opts.metadata);
    checkKeyLength("PUT", name);
    // Known sizes are refused before the bytes cross to the data service; a
    // stream's size is only known there.
    if (size !== undefined && size > MAX_VALUE_BYTES) {
      throw failed("PUT", { status: 413, message: `Value length of ${size} exceeds limit of ${MAX_VALUE_BYTES}.` });
    }
    const got = await this.#stub.put(name, body, sent);
    if (got && got.error) throw failed("PUT", got.error);
  }

  async delete(key) {
    const name = keyName(key);
    checkKey(name);
    checkKeyLength("DELETE", name);
    const got = await this.#stub.delete(name);
    if (got && got.error) throw failed("DELETE", got.error);
  }

  async list(options) {
    const opts = options ?? {};
    const sent = {};
    if (opts.prefix !== undefined && opts.prefix !== null) sent.prefix = String(opts.prefix);
    // As workerd: a limit of 0 (or none) means the default, 1000.
    if (opts.limit !== undefined && opts.limit !== null && Number(opts.limit) !== 0) sent.limit = Number(opts.limit);
    if (opts.cursor !== undefined && opts.cursor !== null) sent.cursor = String(opts.cursor);
    const got = await this.#stub.list(sent);
    if (got.error) throw failed("GET", got.error);
    const result = JSON.parse(got.json);
    result.cacheStatus = null;
    return result;
  }

  get [Symbol.toStringTag]() {
    return "KvNamespace";
  }
}

export function wrap(stub, name) {
  return new KVNamespace(stub, name);
}
