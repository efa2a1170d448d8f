// A service binding as tenant code sees it: `fetch()` plus JSRPC method calls
// to the target's entrypoint. The stub is the gateway's WdlService entrypoint,
// which resolves the target's active version at call time; method calls are
// forwarded by name, so any method the target's entrypoint defines works.
const RESERVED = new Set(["then", "catch", "finally", "constructor", "toJSON"]);

export function wrap(stub, name) {
  const target = {
    fetch(input, init) {
      return stub.fetch(input instanceof Request && init === undefined ? input
        : new Request(input, init));
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
      return (...args) => stub.call(prop, args);
    },
    set() { return false; },
  });
}
