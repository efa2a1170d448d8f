// A service binding as tenant code sees it: `fetch()` plus JSRPC method calls
// to the target's entrypoint. The stub is the gateway's WdlService entrypoint,
// which resolves the target's active version at call time; method calls are
// forwarded by name, so any method the target's entrypoint defines works.
// The name of the request making the call travels with it (requests.js): the gateway
// runs a call made from inside a tail() delivery so that it feeds no tail consumer.
import { carryName, currentRequest } from "./requests.js";

const RESERVED = new Set(["then", "catch", "finally", "constructor", "toJSON"]);

export function wrap(stub, name) {
  const target = {
    fetch(input, init) {
      return stub.fetch(carryName(input instanceof Request && init === undefined ? input
        : new Request(input, init)));
    },
    connect() {
      throw new Error(`connect() over service binding ${name} is not supported by WDL`);
    },
  };
  return new Proxy(target, {
    get(t, prop) {
      if (typeof prop === "symbol") return undefined;
      if (prop in t) return t[prop];
      if (RESERVED.has(prop)) return undefined;
      return (...args) => stub.call(prop, args, currentRequest());
    },
    set() { return false; },
  });
}
