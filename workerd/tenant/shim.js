// Runs in the tenant isolate before the tenant's own modules (the platform's
// main module imports it first). Each platform binding arrives in env as a raw
// JSRPC stub whose props the gateway set; here it is wrapped in the API object
// Workers code expects (KVNamespace, R2Bucket, a service Fetcher). Tenant code
// only ever sees the wrappers; the wrappers keep their stub private.
import { env } from "cloudflare:workers";
import { wrapD1 } from "./d1.js";
import { wrapKv } from "./kv.js";
import { wrapR2 } from "./r2.js";
import { wrapService } from "./service.js";
import { remember, wrapLoader } from "./loader.js";
import { wrapWorkflow } from "./workflows.js";
import { wrapDo } from "./do.js";
import { wrapQueue } from "./queues.js";

const WRAPPERS = { kv: wrapKv, r2: wrapR2, d1: wrapD1, service: wrapService, workflow: wrapWorkflow,
                   queue: wrapQueue, assets: wrapService,  // env.ASSETS: a Fetcher
                   worker_loader: wrapLoader,
                   // The scope (namespace/script/class) its ids are made for (tenant/do.js).
                   durable_object: (stub, name) => wrapDo(stub, name, doScopes[name]) };
const doScopes = env.__WDL_DO || {};
delete env.__WDL_DO;

const kinds = env.__WDL_BINDINGS;
if (kinds && typeof kinds === "object") {
  for (const [name, kind] of Object.entries(kinds)) {
    const wrap = WRAPPERS[kind];
    if (wrap && env[name] !== undefined) {
      const stub = env[name];
      env[name] = wrap(stub, name);
      // A dynamic Worker's env may carry it on as the platform's stub (loader.js).
      remember(env[name], stub, kind);
    }
  }
}
delete env.__WDL_BINDINGS;
