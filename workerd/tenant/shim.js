// Runs in the tenant isolate before the tenant's own modules (the platform's
// main module imports it first). Each platform binding arrives in env as a raw
// JSRPC stub whose props the gateway set; here it is wrapped in the API object
// Workers code expects (KVNamespace, R2Bucket, a service Fetcher), by its kind's
// `wrap` (`./bindings.js`, generated from the registry: eventlog/bindings/).
// Tenant code only ever sees the wrappers; the wrappers keep their stub private.
//
// The gateway's workerd runs with `--expose-gc-as=__wdl_gc` (services/dataplane/
// config.py GC_GLOBAL) and V8 installs that function in every isolate of the
// process, tenants' included, as a non-configurable global: it cannot be deleted,
// so the shim overwrites it with undefined, read-only, before any tenant module runs
// (its imports are the platform's own modules).
// First import: it takes the platform's self-stub minter out of env (workers.js).
import "./workers.js";
import { env } from "cloudflare:workers";
import { WRAPPERS } from "./bindings.js";
import { remember } from "./loader.js";

if ("__wdl_gc" in globalThis) {
  Object.defineProperty(globalThis, "__wdl_gc", { value: undefined, writable: false });
}

// Public facts per binding the gateway's `info(props)` gave (e.g. a DO's id scope).
const infos = env.__WDL_INFO || {};
delete env.__WDL_INFO;

const kinds = env.__WDL_BINDINGS;
if (kinds && typeof kinds === "object") {
  for (const [name, kind] of Object.entries(kinds)) {
    const wrap = WRAPPERS[kind];
    if (wrap && env[name] !== undefined) {
      const stub = env[name];
      env[name] = wrap(stub, name, infos[name]);
      // A dynamic Worker's env may carry it on as the platform's stub (loader.js).
      remember(env[name], stub, kind);
    }
  }
}
delete env.__WDL_BINDINGS;
