// Which request of the platform a tenant's outbound fetch() belongs to, so the
// gateway's egress (platform code) can hold each request to its namespace's
// subrequest budget. The gateway names every request it hands over
// (x-wdl-request-id); the default export's handlers run inside that name, and
// fetch() carries it on. A forged or expired name is refused by the egress; a
// fetch outside any named request (e.g. from a class entrypoint called over
// RPC) is counted apart, not limited (docs/containment.md).
import { AsyncLocalStorage } from "node:async_hooks";

export const HEADER = "x-wdl-request-id";
const current = new AsyncLocalStorage();
const platformFetch = globalThis.fetch;
// The built-ins this module calls, taken before the tenant's modules run: tenant code may
// replace them afterwards (`Headers.prototype.set = ...`), and must not thereby strip
// the name from its fetches - the egress does not limit an unnamed fetch.
const { apply } = Reflect;
const { create, defineProperties, defineProperty, getOwnPropertyDescriptors,
        getPrototypeOf } = Object;
const NativeRequest = Request;
const getStore = AsyncLocalStorage.prototype.getStore;
const runIn = AsyncLocalStorage.prototype.run;
const headersOf = Object.getOwnPropertyDescriptor(Request.prototype, "headers").get;
const getHeader = Headers.prototype.get;
const setHeader = Headers.prototype.set;

// The name of the request running now (undefined outside one): dynamic Workers
// (loader.js) pass it on to their children.
export function currentRequest() {
  return apply(getStore, current, []);
}

// Runs `fn` inside the request name `id` (a tail() delivery's, tail.js).
export function runNamed(id, fn) {
  return typeof id === "string" && id ? apply(runIn, current, [id, fn]) : fn();
}

// `request` carrying the name of the request running now (a service binding's fetch,
// service.js): the gateway tells a call made from inside a tail() delivery by it.
export function carryName(request) {
  const id = apply(getStore, current, []);
  if (id === undefined) return request;
  const named = new NativeRequest(request);
  apply(setHeader, apply(headersOf, named, []), [HEADER, id]);
  return named;
}

globalThis.fetch = function fetch(input, init) {
  const id = apply(getStore, current, []);
  if (id === undefined) return platformFetch(input, init);
  const request = new NativeRequest(input, init);
  apply(setHeader, apply(headersOf, request, []), [HEADER, id]);
  return platformFetch(request);
};

function named(handler, idOf) {
  return function (...args) {
    const id = idOf(args);
    return id ? apply(runIn, current, [id, () => apply(handler, this, args)])
      : apply(handler, this, args);
  };
}

function requestName(args) {
  try {
    return apply(getHeader, apply(headersOf, args[0], []), [HEADER]);
  } catch {
    return null;  // not a Request (the getter checks its receiver)
  }
}

// The tenant's default export with its fetch/scheduled handlers run inside the
// request's name; anything else is returned as it is.
export function wrapDefault(exported) {
  if (!exported || typeof exported !== "object") return exported;
  const out = create(getPrototypeOf(exported));
  defineProperties(out, getOwnPropertyDescriptors(exported));
  if (typeof exported.fetch === "function") {
    defineProperty(out, "fetch", { value: named(exported.fetch, requestName),
                                   writable: true, enumerable: true, configurable: true });
  }
  return out;
}

function notImplemented(method) {
  return new TypeError(`The RPC receiver does not implement the method "${method}".`);
}

// `method` of a tenant export called by platform code rather than by workerd's RPC (a
// tail() delivery's relay, a dispatched call): a class is constructed with this call's
// ctx and env, as workerd would; an object's `fetch` gets (request, env, ctx).
export function invokeExport(target, ctx, env, method, list) {
  if (typeof target === "function" && target.prototype) {
    const instance = new target(ctx, env);
    if (typeof instance[method] !== "function") throw notImplemented(method);
    return instance[method](...list);
  }
  if (method === "fetch" && target && typeof target.fetch === "function") {
    return target.fetch(list[0], env, ctx);
  }
  throw notImplemented(method);
}
