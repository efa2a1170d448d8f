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

const WRAPPERS = { kv: wrapKv, r2: wrapR2, d1: wrapD1, service: wrapService };

const kinds = env.__WDL_BINDINGS;
if (kinds && typeof kinds === "object") {
  for (const [name, kind] of Object.entries(kinds)) {
    const wrap = WRAPPERS[kind];
    if (wrap && env[name] !== undefined) env[name] = wrap(env[name], name);
  }
}
delete env.__WDL_BINDINGS;
