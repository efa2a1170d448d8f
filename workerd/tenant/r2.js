// The R2Bucket API tenant code sees, built over a WdlR2 stub (workerd/gateway/r2.js).
//
// The platform shim replaces each raw stub in env with `wrap(stub, name)`. Argument
// checks, option parsing, error messages and result classes follow workerd's own R2
// binding (what Miniflare runs), so a Worker cannot tell the difference; the stub is kept
// in a private field so tenant code only ever goes through this surface.

const HASHES = [
  ["md5", "MD5", 16],
  ["sha1", "SHA-1", 20],
  ["sha256", "SHA-256", 32],
  ["sha384", "SHA-384", 48],
  ["sha512", "SHA-512", 64],
];
const HTTP_HEADERS = [
  ["contentType", "content-type"],
  ["contentLanguage", "content-language"],
  ["contentDisposition", "content-disposition"],
  ["contentEncoding", "content-encoding"],
  ["cacheControl", "cache-control"],
];
const MAX_DELETE_KEYS = 1000;

function r2Error(op, error) {
  return new Error(`${op}: ${error.message} (${error.code})`);
}

function valueTypeError(op, what) {
  return new TypeError(
    `Failed to execute '${op}' on '${what}': parameter 2 is not of type ` +
      "'JsReadableStream or ArrayBuffer or ArrayBufferView or string or Blob'.",
  );
}

function hexToBuffer(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out.buffer;
}

function bufferToHex(buf) {
  return [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// --- results -----------------------------------------------------------------------------

class R2Checksums {
  #hex;
  constructor(hex) {
    this.#hex = { ...hex };
    for (const [field] of HASHES) {
      if (hex[field] !== undefined) this[field] = hexToBuffer(hex[field]);
    }
  }
  toJSON() {
    const out = {};
    for (const [field] of HASHES) if (this.#hex[field] !== undefined) out[field] = this.#hex[field];
    return out;
  }
}

function httpMetadataOf(raw) {
  const out = {};
  for (const [field] of HTTP_HEADERS) if (raw[field] !== undefined) out[field] = raw[field];
  if (raw.cacheExpiry !== undefined) out.cacheExpiry = new Date(raw.cacheExpiry);
  return out;
}

// Named as workerd names them (`constructor.name` is HeadResult / GetResult).
class HeadResult {
  constructor(raw, withRange) {
    this.key = raw.key;
    this.version = raw.version;
    this.size = raw.size;
    this.etag = raw.etag;
    this.httpEtag = `"${raw.etag}"`;
    this.checksums = new R2Checksums(raw.checksums ?? {});
    this.uploaded = new Date(raw.uploaded);
    this.httpMetadata = httpMetadataOf(raw.httpMetadata ?? {});
    this.customMetadata = { ...(raw.customMetadata ?? {}) };
    this.range = withRange ? (raw.range ?? { offset: 0, length: raw.size }) : undefined;
    this.storageClass = "";
  }
  writeHttpMetadata(headers) {
    for (const [field, header] of HTTP_HEADERS) {
      const value = this.httpMetadata[field];
      if (value !== undefined) headers.set(header, value);
    }
    if (this.httpMetadata.cacheExpiry !== undefined) {
      headers.set("expires", this.httpMetadata.cacheExpiry.toUTCString());
    }
  }
}

class GetResult extends HeadResult {
  #response;
  constructor(raw, body) {
    super(raw, true);
    this.#response = new Response(body);
  }
  get body() {
    return this.#response.body;
  }
  get bodyUsed() {
    return this.#response.bodyUsed;
  }
  arrayBuffer() {
    return this.#response.arrayBuffer();
  }
  bytes() {
    return this.#response.arrayBuffer().then((b) => new Uint8Array(b));
  }
  text() {
    return this.#response.text();
  }
  json() {
    return this.#response.json();
  }
  blob() {
    return this.#response.blob();
  }
}

export { HeadResult as R2Object, GetResult as R2ObjectBody };

// --- option parsing ----------------------------------------------------------------------

function parseEtags(value) {
  const out = [];
  for (const part of String(value).split(",")) {
    const t = part.trim();
    if (t === "") continue;
    if (t === "*") out.push({ type: "wildcard" });
    else if (t.startsWith('W/"') && t.endsWith('"')) out.push({ type: "weak", value: t.slice(3, -1) });
    else if (t.length >= 2 && t.startsWith('"') && t.endsWith('"')) out.push({ type: "strong", value: t.slice(1, -1) });
    else out.push({ type: "strong", value: t });
  }
  return out;
}

function dateMs(value) {
  const ms = value instanceof Date ? value.getTime() : new Date(value).getTime();
  if (Number.isNaN(ms)) throw new TypeError("Invalid date");
  return ms;
}

function parseOnlyIf(onlyIf, optionsType) {
  if (onlyIf === undefined || onlyIf === null) return undefined;
  if (onlyIf instanceof Headers) {
    const out = { secondsGranularity: true };
    const match = onlyIf.get("if-match");
    const none = onlyIf.get("if-none-match");
    const before = onlyIf.get("if-unmodified-since");
    const after = onlyIf.get("if-modified-since");
    if (match !== null) out.etagMatches = parseEtags(match);
    if (none !== null) out.etagDoesNotMatch = parseEtags(none);
    if (before !== null) out.uploadedBefore = dateMs(before);
    if (after !== null) out.uploadedAfter = dateMs(after);
    return out;
  }
  if (typeof onlyIf !== "object") {
    throw new TypeError(
      `Incorrect type for the 'onlyIf' field on '${optionsType}': the provided value is not of type 'Conditional or Headers'.`,
    );
  }
  const out = {};
  if (onlyIf.etagMatches !== undefined) out.etagMatches = parseEtags(onlyIf.etagMatches);
  if (onlyIf.etagDoesNotMatch !== undefined) out.etagDoesNotMatch = parseEtags(onlyIf.etagDoesNotMatch);
  if (onlyIf.uploadedBefore !== undefined) out.uploadedBefore = dateMs(onlyIf.uploadedBefore);
  if (onlyIf.uploadedAfter !== undefined) out.uploadedAfter = dateMs(onlyIf.uploadedAfter);
  if (onlyIf.secondsGranularity) out.secondsGranularity = true;
  for (const k of ["etagMatches", "etagDoesNotMatch"]) if (out[k] && out[k].length === 0) delete out[k];
  return out;
}

function parseRange(range) {
  if (range === undefined || range === null) return {};
  if (range instanceof Headers) {
    const header = range.get("range");
    return header === null ? {} : { rangeHeader: header };
  }
  if (typeof range !== "object") {
    throw new TypeError(
      "Incorrect type for the 'range' field on 'GetOptions': the provided value is not of type 'R2Range or Headers'.",
    );
  }
  const { offset, length, suffix } = range;
  if (offset !== undefined && offset < 0) {
    throw new RangeError(`Invalid range. Starting offset (${offset}) must be greater than or equal to 0.`);
  }
  if (length !== undefined && length < 0) {
    throw new RangeError(`Invalid range. Length (${length}) must be greater than or equal to 0.`);
  }
  if (suffix !== undefined) {
    if (offset !== undefined) throw new TypeError("Suffix is incompatible with offset.");
    if (length !== undefined) throw new TypeError("Suffix is incompatible with length.");
    return { range: { suffix: Number(suffix) } };
  }
  if (offset === undefined && length === undefined) return {};
  const out = {};
  if (offset !== undefined) out.offset = Number(offset);
  if (length !== undefined) out.length = Number(length);
  return { range: out };
}

function parseHttpMetadata(meta) {
  if (meta === undefined || meta === null) return undefined;
  const out = {};
  if (meta instanceof Headers) {
    for (const [field, header] of HTTP_HEADERS) {
      const v = meta.get(header);
      if (v !== null) out[field] = v;
    }
    const expires = meta.get("expires");
    if (expires !== null) {
      const ms = new Date(expires).getTime();
      if (!Number.isNaN(ms)) out.cacheExpiry = ms;
    }
    return out;
  }
  for (const [field] of HTTP_HEADERS) if (meta[field] !== undefined) out[field] = String(meta[field]);
  if (meta.cacheExpiry !== undefined) out.cacheExpiry = dateMs(meta.cacheExpiry);
  return out;
}

function parseCustomMetadata(meta) {
  if (meta === undefined || meta === null) return undefined;
  const out = {};
  for (const [k, v] of Object.entries(meta)) out[k] = String(v);
  return out;
}

function parseChecksums(options) {
  let found = null;
  for (const [field, name, size] of HASHES) {
    const value = options[field];
    if (value === undefined) continue;
    if (found !== null) throw new TypeError("You cannot specify multiple hashing algorithms.");
    let hex;
    if (typeof value === "string") {
      if (value.length !== size * 2) {
        throw new TypeError(`${name} is ${size * 2} hex characters, not ${value.length}`);
      }
      if (!/^[0-9a-fA-F]*$/.test(value)) throw new TypeError(`Provided ${name} wasn't a valid hex string`);
      hex = value.toLowerCase();
    } else if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) {
      const bytes = value instanceof ArrayBuffer
        ? new Uint8Array(value)
        : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
      if (bytes.length !== size) throw new TypeError(`${name} is ${size} bytes, not ${bytes.length}`);
      hex = bufferToHex(bytes);
    } else {
      throw new TypeError(`Incorrect type for the '${field}' field on 'PutOptions'.`);
    }
    found = [field, hex];
  }
  return found === null ? {} : { [found[0]]: found[1] };
}

function toBody(value, op, what) {
  if (value === null || value === undefined) return null;
  if (typeof value === "string") return new TextEncoder().encode(value).buffer;
  if (value instanceof ArrayBuffer) return value.slice(0);
  if (ArrayBuffer.isView(value)) {
    return value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength);
  }
  if (value instanceof Blob) return value.stream();
  if (value instanceof ReadableStream) return value;
  throw valueTypeError(op, what);
}

function checkPartNumber(n) {
  if (!Number.isInteger(n) || n < 1 || n > 10000) {
    throw new TypeError(`Part number must be between 1 and 10000 (inclusive). Actual value was: ${n}`);
  }
}

// --- the binding ------------------------------------------------------------------------

class R2MultipartUpload {
  #stub;
  constructor(stub, key, uploadId) {
    this.#stub = stub;
    this.key = key;
    this.uploadId = uploadId;
  }
  async uploadPart(partNumber, value) {
    checkPartNumber(partNumber);
    const body = toBody(value, "uploadPart", "R2MultipartUpload");
    const result = await this.#stub.uploadPart(this.key, this.uploadId, partNumber, body);
    if (result.error) throw r2Error("uploadPart", result.error);
    return { partNumber: result.partNumber, etag: result.etag };
  }
  async abort() {
    const result = await this.#stub.abortMultipartUpload(this.key, this.uploadId);
    if (result.error) throw r2Error("abortMultipartUpload", result.error);
  }
  async complete(uploadedParts) {
    const parts = [...uploadedParts].map((p) => ({ partNumber: p.partNumber, etag: String(p.etag) }));
    const result = await this.#stub.completeMultipartUpload(this.key, this.uploadId, parts);
    if (result.error) throw r2Error("completeMultipartUpload", result.error);
    return new HeadResult(result.object, false);
  }
}

class R2Bucket {
  #stub;
  #name;
  constructor(stub, name) {
    this.#stub = stub;
    this.#name = name;
  }

  async head(key) {
    const result = await this.#stub.head(String(key));
    if (result.error) throw r2Error("head", result.error);
    return result.object ? new HeadResult(result.object, true) : null;
  }

  async get(key, options = {}) {
    const request = { ...parseRange(options.range) };
    const onlyIf = parseOnlyIf(options.onlyIf, "GetOptions");
    if (onlyIf !== undefined) request.onlyIf = onlyIf;
    const result = await this.#stub.get(String(key), request);
    if (result.error) {
      // A failed condition answers the object's metadata without a body, as R2 does.
      if (result.error.code === 10031 && result.object) return new HeadResult(result.object, true);
      throw r2Error("get", result.error);
    }
    if (!result.object) return null;
    return new GetResult(result.object, result.body);
  }

  async put(key, value, options = {}) {
    const body = toBody(value, "put", "R2Bucket");
    const request = { ...parseChecksums(options) };
    const http = parseHttpMetadata(options.httpMetadata);
    const custom = parseCustomMetadata(options.customMetadata);
    const onlyIf = parseOnlyIf(options.onlyIf, "PutOptions");
    if (http !== undefined) request.httpMetadata = http;
    if (custom !== undefined) request.customMetadata = custom;
    if (onlyIf !== undefined) request.onlyIf = onlyIf;
    const result = await this.#stub.put(String(key), body, request);
    if (result.error) {
      if (result.error.code === 10031) return null;
      throw r2Error("put", result.error);
    }
    return new HeadResult(result.object, false);
  }

  async delete(keys) {
    const list = Array.isArray(keys) ? keys.map(String) : [String(keys)];
    if (list.length > MAX_DELETE_KEYS) {
      throw r2Error("delete", { code: 10029, message: `Too many keys; the maximum is ${MAX_DELETE_KEYS}.` });
    }
    const result = await this.#stub.delete(list);
    if (result.error) throw r2Error("delete", result.error);
  }

  async list(options = {}) {
    const request = {};
    for (const k of ["prefix", "cursor", "delimiter", "startAfter"]) {
      if (options[k] !== undefined && options[k] !== null) request[k] = String(options[k]);
    }
    if (options.limit !== undefined && options.limit !== null) request.limit = Number(options.limit);
    if (options.include !== undefined) {
      request.include = [];
      for (const item of options.include) {
        if (item !== "httpMetadata" && item !== "customMetadata") {
          throw new RangeError(`Unsupported include value ${item}`);
        }
        request.include.push(item);
      }
    }
    if (request.limit !== undefined && !(request.limit >= 1 && request.limit <= 1000)) {
      throw r2Error("list", { code: 10022, message: "MaxKeys params must be positive integer <= 1000." });
    }
    const result = await this.#stub.list(request);
    if (result.error) throw r2Error("list", result.error);
    const out = {
      objects: result.objects.map((o) => new HeadResult(o, false)),
      truncated: result.truncated,
      delimitedPrefixes: result.delimitedPrefixes,
    };
    if (result.truncated) out.cursor = result.cursor;
    return out;
  }

  async createMultipartUpload(key, options = {}) {
    const request = {};
    const http = parseHttpMetadata(options.httpMetadata);
    const custom = parseCustomMetadata(options.customMetadata);
    if (http !== undefined) request.httpMetadata = http;
    if (custom !== undefined) request.customMetadata = custom;
    const k = String(key);
    const result = await this.#stub.createMultipartUpload(k, request);
    if (result.error) throw r2Error("createMultipartUpload", result.error);
    return new R2MultipartUpload(this.#stub, k, result.uploadId);
  }

  resumeMultipartUpload(key, uploadId) {
    if (typeof uploadId !== "string") {
      throw new TypeError(
        "Failed to execute 'resumeMultipartUpload' on 'R2Bucket': parameter 2 is not of type 'string'.",
      );
    }
    return new R2MultipartUpload(this.#stub, String(key), uploadId);
  }

  toString() {
    return `[object R2Bucket ${this.#name}]`;
  }
}

export function wrap(stub, name) {
  return new R2Bucket(stub, name);
}
