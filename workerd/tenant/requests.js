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

// The name of the request running now (undefined outside one): dynamic Workers
// (loader.js) pass it on to their children.
export function currentRequest() {
  return current.getStore();
}

globalThis.fetch = function fetch(input, init) {
  const id = current.getStore();
  if (id === undefined) return platformFetch(input, init);
  const request = new Request(input, init);
  request.headers.set(HEADER, id);
  return platformFetch(request);
};

function named(handler, idOf) {
  return function (...args) {
    const id = idOf(args);
    return id ? current.run(id, () => handler.apply(this, args)) : handler.apply(this, args);
  };
}

// The tenant's default export with its fetch/scheduled handlers run inside the
// request's name; anything else is returned as it is.
export function wrapDefault(exported) {
  if (!exported || typeof exported !== "object") return exported;
  const out = Object.create(Object.getPrototypeOf(exported));
  Object.defineProperties(out, Object.getOwnPropertyDescriptors(exported));
  if (typeof exported.fetch === "function") {
    out.fetch = named(exported.fetch, (args) => args[0] && args[0].headers &&
      args[0].headers.get(HEADER));
  }
  return out;
}
