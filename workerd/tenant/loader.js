// The Dynamic Worker Loader API (`worker_loaders` bindings) for tenant code,
// over the platform's WdlLoader stub (workerd/gateway/loader.js).
//
// workerd does not let a loaded worker hold its own children's entrypoints, so
// a WorkerStub here is a handle: each fetch()/RPC call on one of its entrypoints
// is forwarded by the gateway, which loads the child (calling back into
// `getCode` only when its isolate is not loaded yet). The shim registers every
// binding object it made (`remember`), so that the parent's own bindings put
// into a child's `env` travel as the platform's stubs (their props unchanged:
// still the parent's namespace) and are wrapped again in the child.
import { HEADER, currentRequest } from "./requests.js";
import { isMinted } from "./workers.js";

const raw = new WeakMap();  // binding object the shim made -> {stub, kind}

export function remember(wrapper, stub, kind) {
  if (wrapper !== null && (typeof wrapper === "object" || typeof wrapper === "function")) {
    raw.set(wrapper, { stub, kind });
  }
}

// WorkerCode -> what the gateway's childCode() accepts (binding objects as stubs).
// A self stub still pending (`exports.X({props})` is an RpcPromise: workers.js) is
// awaited first, so the child's env gets the stub itself.
async function portable(code) {
  if (code === null || typeof code !== "object") {
    throw new TypeError("The Worker code callback must return a WorkerCode object.");
  }
  const out = { ...code };
  if (code.env !== undefined && code.env !== null && typeof code.env === "object") {
    const env = {};
    const kinds = {};
    for (let [name, value] of Object.entries(code.env)) {
      if (isMinted(value)) value = await value;
      const known = (value !== null && typeof value === "object" || typeof value === "function")
        ? raw.get(value) : undefined;
      if (known) {
        env[name] = known.stub;
        kinds[name] = known.kind;
      } else {
        env[name] = value;
      }
    }
    out.env = env;
    out.kinds = kinds;
  }
  if (code.globalOutbound !== undefined && code.globalOutbound !== null) {
    const known = raw.get(code.globalOutbound);
    if (!known || known.kind !== "service") {
      throw new TypeError("WDL: globalOutbound must be null or a service binding of this " +
        "Worker (its other Fetchers cannot be handed to a dynamic Worker here).");
    }
    out.globalOutbound = known.stub;
    out.outbound = "service";
  }
  return out;
}

const RESERVED = new Set(["then", "catch", "finally", "constructor", "toJSON"]);

function entrypoint(stub, handle) {
  const target = {
    fetch(input, init) {
      const request = new Request(input, init);
      // The child's fetches count against the budget of this request.
      const id = currentRequest();
      if (id !== undefined) request.headers.set(HEADER, id);
      else request.headers.delete(HEADER);
      return stub.fetchChild(handle, request);
    },
    connect() {
      throw new Error("connect() on a dynamic Worker is not supported by WDL");
    },
  };
  return new Proxy(target, {
    get(t, prop) {
      if (typeof prop === "symbol") return undefined;
      if (prop in t) return t[prop];
      if (RESERVED.has(prop)) return undefined;
      return (...args) => stub.callChild(handle, prop, args);
    },
    set() { return false; },
  });
}

class WorkerStub {
  #stub;
  #id;
  #code;
  constructor(stub, id, code) {
    this.#stub = stub;
    this.#id = id;
    this.#code = code;
  }

  getEntrypoint(name, options) {
    const handle = { id: this.#id, code: this.#code };
    if (name !== undefined && name !== null) handle.name = String(name);
    if (options && options.props !== undefined) handle.props = options.props;
    return entrypoint(this.#stub, handle);
  }
}

class WorkerLoader {
  #stub;
  constructor(stub) {
    this.#stub = stub;
  }

  get(id, getCode) {
    if (typeof getCode !== "function") {
      throw new TypeError("Failed to execute 'get' on 'WorkerLoader': parameter 2 is not of " +
        "type 'Function'.");
    }
    // Called by the gateway only when the child is not loaded in its process.
    return new WorkerStub(this.#stub, String(id), async () => portable(await getCode()));
  }

  load(code) {
    return new WorkerStub(this.#stub, null, async () => portable(code));
  }

  get [Symbol.toStringTag]() {
    return "WorkerLoader";
  }
}

export function wrap(stub) {
  return new WorkerLoader(stub);
}
