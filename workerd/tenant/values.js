// Structured-clone values as text: JSON in which what JSON cannot carry is tagged,
// so undefined, NaN/±Infinity/-0, BigInt, Date, RegExp, Map, Set, ArrayBuffer and
// views, Error, boxed primitives, holes, shared and circular references arrive as
// they were sent. Objects are numbered in the order they are first met, on both
// sides, so {$wdl: "ref"} can point back at one. Used for Durable Object RPC values
// (tenant/do.js, objects/objects.js) and `v8` queue messages (tenant/queues.js,
// gateway/queues.js). Delivered to tenants as `__wdl/values.js`; no imports.
const VIEWS = new Set(["Int8Array", "Uint8Array", "Uint8ClampedArray", "Int16Array",
  "Uint16Array", "Int32Array", "Uint32Array", "Float32Array", "Float64Array",
  "BigInt64Array", "BigUint64Array", "DataView"]);
const ERRORS = new Set(["Error", "EvalError", "RangeError", "ReferenceError", "SyntaxError",
  "TypeError", "URIError"]);
const BOXES = { String, Number, Boolean, BigInt };

function cloneError(message) {
  return new DOMException(message, "DataCloneError");
}

export function toB64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

export function fromB64(text) {
  const raw = atob(text);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

// A built-in class (Promise, WeakMap, Request...): never cloned member by member.
function isNative(ctor) {
  return typeof ctor === "function" &&
    /\{\s*\[native code\]\s*\}\s*$/.test(Function.prototype.toString.call(ctor));
}

function tagOf(v, seen, opts) {
  switch (typeof v) {
    case "string": case "boolean": return v;
    case "number":
      if (Number.isFinite(v) && !Object.is(v, -0)) return v;
      return { $wdl: "n", v: Object.is(v, -0) ? "-0" : String(v) };
    case "undefined": return { $wdl: "u" };
    case "bigint": return { $wdl: "big", v: v.toString() };
    case "symbol": throw cloneError(`${String(v)} could not be cloned.`);
    case "function": throw cloneError(opts.functions || `${String(v)} could not be cloned.`);
  }
  if (v === null) return null;
  if (seen.has(v)) return { $wdl: "ref", i: seen.get(v) };
  seen.set(v, seen.size);
  if (Array.isArray(v)) {
    const out = new Array(v.length);
    for (let i = 0; i < v.length; i++) out[i] = i in v ? tagOf(v[i], seen, opts) : { $wdl: "hole" };
    return out;
  }
  const proto = Object.getPrototypeOf(v);
  if (proto === Object.prototype) {
    const out = {};
    for (const k of Object.keys(v)) out[k] = tagOf(v[k], seen, opts);
    return "$wdl" in v ? { $wdl: "obj", v: out } : out;
  }
  if (v instanceof Date) return { $wdl: "date", v: String(v.getTime()) };
  if (v instanceof RegExp) return { $wdl: "re", s: v.source, f: v.flags };
  if (v instanceof Map) {
    return { $wdl: "map", v: Array.from(v, ([k, x]) => [tagOf(k, seen, opts), tagOf(x, seen, opts)]) };
  }
  if (v instanceof Set) return { $wdl: "set", v: Array.from(v, (x) => tagOf(x, seen, opts)) };
  if (v instanceof ArrayBuffer) return { $wdl: "ab", v: toB64(new Uint8Array(v)) };
  if (ArrayBuffer.isView(v) && VIEWS.has(v.constructor.name)) {
    return { $wdl: "view", t: v.constructor.name,
             v: toB64(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)) };
  }
  if (v instanceof Error) {
    // As structured clone: a name outside the standard ones becomes "Error".
    const name = ERRORS.has(v.name) ? v.name : "Error";
    return { $wdl: "err", n: name, m: String(v.message) };
  }
  for (const [t, Box] of Object.entries(BOXES)) {
    if (v instanceof Box) return { $wdl: "box", t, v: tagOf(v.valueOf(), new Map(), opts) };
  }
  if (!opts.strict && !isNative(v.constructor)) {
    // structuredClone keeps a class instance's (or null-prototype object's) own
    // enumerable properties, as a plain object.
    const out = {};
    for (const k of Object.keys(v)) out[k] = tagOf(v[k], seen, opts);
    return "$wdl" in out ? { $wdl: "obj", v: out } : out;
  }
  const type = proto === null ? "Object" : (v.constructor && v.constructor.name) || "Object";
  throw cloneError(`Could not serialize object of type "${type}". ` +
                   "This type does not support serialization.");
}

function untagOf(t, refs) {
  if (t === null || typeof t !== "object") return t;
  if (Array.isArray(t)) {
    const out = new Array(t.length);
    refs.push(out);
    for (let i = 0; i < t.length; i++) {
      const x = t[i];
      if (x !== null && typeof x === "object" && x.$wdl === "hole" && !Array.isArray(x)) continue;
      out[i] = untagOf(x, refs);
    }
    return out;
  }
  if (!("$wdl" in t)) {
    const out = {};
    refs.push(out);
    for (const k of Object.keys(t)) out[k] = untagOf(t[k], refs);
    return out;
  }
  switch (t.$wdl) {
    case "n": return Number(t.v);
    case "u": return undefined;
    case "big": return BigInt(t.v);
    case "ref": return refs[t.i];
    case "obj": {
      const out = {};
      refs.push(out);
      for (const k of Object.keys(t.v)) out[k] = untagOf(t.v[k], refs);
      return out;
    }
    case "date": { const d = new Date(Number(t.v)); refs.push(d); return d; }
    case "re": { const r = new RegExp(t.s, t.f); refs.push(r); return r; }
    case "map": {
      const m = new Map();
      refs.push(m);
      for (const [k, x] of t.v) m.set(untagOf(k, refs), untagOf(x, refs));
      return m;
    }
    case "set": {
      const s = new Set();
      refs.push(s);
      for (const x of t.v) s.add(untagOf(x, refs));
      return s;
    }
    case "ab": { const b = fromB64(t.v).buffer; refs.push(b); return b; }
    case "view": {
      if (!VIEWS.has(t.t)) throw cloneError(`unknown view type ${t.t}`);
      const v = new globalThis[t.t](fromB64(t.v).buffer);
      refs.push(v);
      return v;
    }
    case "err": {
      const e = new (ERRORS.has(t.n) ? globalThis[t.n] : Error)(t.m);
      refs.push(e);
      return e;
    }
    case "box": {
      const Box = BOXES[t.t];
      if (!Box) throw cloneError(`unknown boxed type ${t.t}`);
      const b = Object(untagOf(t.v, []));
      refs.push(b);
      return b;
    }
    // Queue messages written by the previous release's `v8` encoding.
    case "undefined": return undefined;
    case "bigint": return BigInt(t.v);
    case "num": return Number(t.v);
    case "bytes": { const b = fromB64(t.v).buffer; refs.push(b); return b; }
    case "u8": { const u = fromB64(t.v); refs.push(u); return u; }
    default: throw cloneError(`unknown tag ${String(t.$wdl)}`);
  }
}

// Durable Object RPC (tenant/do.js and the DO host): Workers RPC is stricter than
// structuredClone (no class instances); functions would be stubs there, which cannot
// cross processes here.
export const RPC = { strict: true, functions: "Functions cannot be passed to or returned " +
                     "from a Durable Object over WDL's RPC." };

// A value -> the text that carries it; throws DataCloneError as structuredClone does.
// opts.strict: refuse class instances and null-prototype objects, as Workers RPC does;
// opts.functions: the refusal's message for a function.
export function encodeValue(value, opts = {}) {
  return JSON.stringify(tagOf(value, new Map(), opts));
}

export function decodeValue(text) {
  return untagOf(JSON.parse(text), []);
}
