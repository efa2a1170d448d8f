// A `dispatch_namespaces` binding as tenant code sees it (Workers for Platforms'
// DynamicDispatcher): `get(name, args?, options?)` returns a Fetcher with RPC for the
// user worker `name`, resolved by the gateway (gateway/dispatch.js) at each call.
// `get` itself does no I/O, as on Cloudflare: a missing worker shows at the first call
// ("Worker not found..."). Options are checked here first and again by the gateway.
//
// `dispatchRunner` is the user worker's side: the gateway calls an RPC method through it
// so that the method runs inside the call's request name (requests.js), which carries
// the call's subrequest budget and outbound parameters.
import { WorkerEntrypoint } from "cloudflare:workers";
import { HEADER, carryName, invokeExport, runNamed } from "./requests.js";

function noHandler() {
  return new TypeError("The user Worker has no fetch() handler.");
}

const RESERVED = new Set(["then", "catch", "finally", "constructor", "toJSON"]);
const OPTIONS = new Set(["limits", "outbound"]);

function checkOptions(options) {
  if (options === undefined || options === null) return undefined;
  if (typeof options !== "object") {
    throw new TypeError("Failed to execute 'get' on 'DynamicDispatcher': options must be an " +
      "object");
  }
  for (const key of Object.keys(options)) {
    if (!OPTIONS.has(key)) {
      throw new TypeError(`DynamicDispatcher.get: option ${key} is not supported (limits, ` +
        "outbound)");
    }
  }
  const limits = options.limits;
  if (limits !== undefined && limits !== null && typeof limits === "object" &&
      "cpuMs" in limits) {
    throw new TypeError("DynamicDispatcher.get: limits.cpuMs is not supported by WDL: this " +
      "runtime cannot enforce CPU time per call (use subRequests, or wallMs for wall time)");
  }
  return { limits: options.limits, outbound: options.outbound };
}

function fetcher(stub, name, options) {
  const target = {
    fetch(input, init) {
      const request = input instanceof Request && init === undefined ? input
        : new Request(input, init);
      return stub.fetchWorker(name, carryName(request), options);
    },
    connect() {
      throw new Error("connect() on a dispatched Worker is not supported by WDL");
    },
  };
  return new Proxy(target, {
    get(t, prop) {
      if (typeof prop === "symbol") return undefined;
      if (prop in t) return t[prop];
      if (RESERVED.has(prop)) return undefined;
      return (...args) => stub.callWorker(name, prop, args, options);
    },
    set() { return false; },
  });
}

class DynamicDispatcher {
  #stub;
  constructor(stub) {
    this.#stub = stub;
  }

  get(name, args, options) {
    if (typeof name !== "string") {
      throw new TypeError("Failed to execute 'get' on 'DynamicDispatcher': parameter 1 is " +
        "not of type 'string'.");
    }
    if (args !== undefined && args !== null &&
        (typeof args !== "object" || Object.keys(args).length > 0)) {
      throw new TypeError("DynamicDispatcher.get: `args` is not supported by WDL (pass {} or " +
        "nothing)");
    }
    return fetcher(this.#stub, name, checkOptions(options));
  }

  get [Symbol.toStringTag]() {
    return "DynamicDispatcher";
  }
}

export function wrap(stub) {
  return new DynamicDispatcher(stub);
}

// The default export's fetch() or RPC `method`, run inside the call's request name.
export function dispatchRunner(tenantDefault) {
  return class extends WorkerEntrypoint {
    // The name is on the request (the gateway set it), as for any request it hands over;
    // a class default export's fetch() is named here too (wrapDefault names objects').
    async fetch(request) {
      const name = request.headers.get(HEADER);
      return runNamed(name, () => {
        const target = tenantDefault;
        if (typeof target === "function" && target.prototype) {
          const instance = new target(this.ctx, this.env);
          if (typeof instance.fetch !== "function") throw noHandler();
          return instance.fetch(request);
        }
        if (target && typeof target.fetch === "function") {
          return target.fetch(request, this.env, this.ctx);
        }
        throw noHandler();
      });
    }

    // `method` of the default export, inside the request name `name`.
    async call(name, method, args) {
      // RPC reaches a class default export only (a plain object has no RPC methods).
      if (typeof tenantDefault !== "function") {
        throw new TypeError(`The RPC receiver does not implement the method "${method}".`);
      }
      return runNamed(name, () => invokeExport(tenantDefault, this.ctx, this.env, method,
                                               Array.isArray(args) ? args : []));
    }
  };
}
