// Durable Object namespace bindings for tenant code (DurableObjectNamespace),
// over the platform's WdlDo stub (workerd/gateway/do.js). Delivered to the
// tenant isolate as `__wdl/do.js`; the shim replaces each raw stub with
// `wrap(stub, name, scope)`. Ids are made here, synchronously as on
// Cloudflare: 32 bytes as 64 hex digits, 16 naming the object and 16 of
// SHA-256 over the binding's scope (namespace/script/class) and those 16, so
// idFromString refuses an id of another namespace or class (docs/durable-objects.md).
// The tag is not a secret and needs not be: the gateway re-checks it against the
// props it set, and an object is addressed only inside those props' class.
// RPC values travel as tagged JSON text (values.js).
import { RPC, decodeValue, encodeValue } from "./values.js";

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

// SHA-256 of bytes (FIPS 180-4), synchronous: crypto.subtle is async only.
export function sha256(bytes) {
  const len = bytes.length;
  const padded = new Uint8Array(((len + 9 + 63) >> 6) << 6);
  padded.set(bytes);
  padded[len] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 4, (len * 8) >>> 0);
  view.setUint32(padded.length - 8, Math.floor(len / 0x20000000));
  const h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                             0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) +
                  K[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      hh = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
  const out = new Uint8Array(32);
  const ov = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) ov.setUint32(i * 4, h[i]);
  return out;
}

const utf8 = new TextEncoder();
const hex = (bytes) => [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");

export function idTag(scope, bodyHex) {
  return hex(sha256(utf8.encode(`wdl-do-id\0${scope}\0${bodyHex}`)).subarray(0, 16));
}

export function nameBody(scope, name) {
  return hex(sha256(utf8.encode(`wdl-do-name\0${scope}\0${name}`)).subarray(0, 16));
}

const ID_RE = /^[0-9a-f]{64}$/;
const RESERVED = new Set(["then", "catch", "finally", "constructor", "toJSON"]);

class DurableObjectId {
  #hex;
  constructor(text, name) {
    this.#hex = text;
    if (name !== undefined) this.name = name;
  }
  toString() { return this.#hex; }
  toJSON() { return this.#hex; }
  equals(other) { return other instanceof DurableObjectId && other.toString() === this.#hex; }
}

function stubFor(raw, id) {
  const text = id.toString();
  const name = id.name;
  const target = {
    id,
    name,
    fetch(input, init) {
      // The stub's HTTP fetch (not an RPC method), so a WebSocket upgrade passes; the
      // object is named in headers the gateway entrypoint reads and removes.
      const request = new Request(input, init);
      request.headers.set("x-wdl-do-id", text);
      if (name !== undefined) request.headers.set("x-wdl-do-name", encodeURIComponent(name));
      else request.headers.delete("x-wdl-do-name");
      return raw.fetch(request);
    },
    connect() {
      throw new Error("connect() on a Durable Object stub is not supported by WDL");
    },
  };
  return new Proxy(target, {
    get(t, prop) {
      if (typeof prop === "symbol") return undefined;
      if (prop in t) return t[prop];
      if (RESERVED.has(prop)) return undefined;
      return async (...args) => {
        const r = await raw.call(text, name ?? null, prop, encodeValue(args, RPC));
        if (r.error) {
          const Ctor = globalThis[r.error.name] || Error;
          const err = new Ctor(r.error.message);
          if (!(err.name === r.error.name)) err.name = r.error.name;
          throw err;
        }
        return r.undefined ? undefined : decodeValue(r.json);
      };
    },
    set() { return false; },
  });
}

export function wrap(raw, bindingName, scope) {
  const ns = {
    idFromName(name) {
      const text = String(name);
      const body = nameBody(scope, text);
      return new DurableObjectId(body + idTag(scope, body), text);
    },
    newUniqueId(options) {
      if (options && options.jurisdiction !== undefined) {
        throw new TypeError("jurisdiction is not supported by WDL");
      }
      const body = hex(crypto.getRandomValues(new Uint8Array(16)));
      return new DurableObjectId(body + idTag(scope, body));
    },
    idFromString(text) {
      const s = String(text);
      if (!ID_RE.test(s)) {
        throw new TypeError("Invalid Durable Object ID: must be 64 hex digits");
      }
      if (idTag(scope, s.slice(0, 32)) !== s.slice(32)) {
        throw new TypeError("Durable Object ID is not valid for this namespace.");
      }
      return new DurableObjectId(s);
    },
    get(id) {
      if (!(id instanceof DurableObjectId)) {
        throw new TypeError("Failed to execute 'get' on 'DurableObjectNamespace': parameter 1 " +
                            "is not of type 'DurableObjectId'.");
      }
      if (idTag(scope, id.toString().slice(0, 32)) !== id.toString().slice(32)) {
        throw new TypeError("Durable Object ID is not valid for this namespace.");
      }
      return stubFor(raw, id);
    },
    getByName(name) {
      return ns.get(ns.idFromName(name));
    },
    jurisdiction() {
      throw new TypeError("jurisdiction is not supported by WDL");
    },
  };
  void bindingName;
  return Object.freeze(ns);
}
