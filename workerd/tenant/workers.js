// "cloudflare:workers" as a deployed tenant's modules see it: the gateway rewrites
// the specifier in the tenant's own ES modules to this module (gateway.js
// tenantModules). Everything is workerd's, except `exports`: workerd's `exports` in a
// dynamically loaded worker makes stubs that cannot leave the isolate (into a
// dynamic Worker's env, over RPC), so here `exports.X(opts)` of the tenant's own
// WorkerEntrypoint X asks the platform to mint one (env.__WDL_SELF, the gateway's
// WdlSelfBinding: workerd/gateway/self.js). The result is an RpcPromise: calls on it
// pipeline at once, `await` gives a stub that goes anywhere a binding goes. An
// explicit export shadows the star export of the same name.
export * from "cloudflare:workers";
import * as native from "cloudflare:workers";

const minter = native.env.__WDL_SELF;
delete native.env.__WDL_SELF;
const { WorkerEntrypoint } = native;
const minted = new WeakSet();
const factories = new Map();
let tenant = null;  // the tenant's main module namespace (__wdl/main.js sets it)

export function setMain(namespace) {
  tenant = namespace;
}

// A pending self stub (dynamic Workers' env: loader.js resolves it before it leaves).
export function isMinted(value) {
  // An RpcPromise is callable (typeof "function").
  return value !== null && (typeof value === "object" || typeof value === "function") &&
    minted.has(value);
}

function isEntrypoint(name) {
  if (tenant === null || !Object.prototype.hasOwnProperty.call(tenant, name)) return false;
  const value = tenant[name];
  if (name === "default") return value !== undefined && value !== null;
  return typeof value === "function" && value.prototype instanceof WorkerEntrypoint;
}

// The minted stub as the tenant holds it. Not the RpcPromise itself: on the pinned
// workerd a second call pipelined on an RpcPromise after a first one finished fails
// ("The RPC receiver does not implement the method"), so calls wait for the stub and
// go to it; `await` gives the stub (transferable, as a binding is).
function selfStub(pending) {
  const ready = new Promise((resolve, reject) => pending.then(resolve, reject));
  ready.catch(() => {});  // a stub never used must not be an unhandled rejection
  const calls = new Map();
  return new Proxy(function () {}, {
    get(_, prop) {
      if (prop === "then") return (ok, fail) => ready.then(ok, fail);
      if (prop === "catch") return (fail) => ready.catch(fail);
      if (prop === "finally") return (fn) => ready.finally(fn);
      if (typeof prop !== "string") return undefined;
      let call = calls.get(prop);
      if (!call) {
        call = (...args) => ready.then((s) => s[prop](...args));
        calls.set(prop, call);
      }
      return call;
    },
    apply() {
      throw new TypeError("a self stub is not a function");
    },
  });
}

function factory(name) {
  let f = factories.get(name);
  if (f) return f;
  f = function (options) {
    if (options !== undefined && (options === null || typeof options !== "object")) {
      throw new TypeError(`exports.${name}(): the options must be an object`);
    }
    const props = options === undefined ? undefined : options.props;
    if (props !== undefined) {
      let text;
      try {
        text = JSON.stringify(props);
      } catch (err) {
        throw new TypeError(`exports.${name}(): props must be JSON-serializable on WDL ` +
          `(${err && err.message})`);
      }
      if (text === undefined) {
        throw new TypeError(`exports.${name}(): props must be JSON-serializable on WDL`);
      }
    }
    const stub = selfStub(minter.mint(name, props));
    minted.add(stub);
    return stub;
  };
  factories.set(name, f);
  return f;
}

const own = minter !== undefined && minter !== null;
export const exports = new Proxy({}, {
  get(_, name) {
    if (typeof name !== "string" || name === "then") return undefined;
    if (own && isEntrypoint(name)) return factory(name);
    return native.exports === undefined ? undefined : native.exports[name];
  },
  has(_, name) {
    return (own && typeof name === "string" && isEntrypoint(name)) ||
      (native.exports !== undefined && name in native.exports);
  },
  set() { return false; },
  defineProperty() { return false; },
  deleteProperty() { return false; },
});
