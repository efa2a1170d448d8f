// Tail Workers: how the gateway calls a tenant's tail(events, env, ctx). Delivered to
// the tenant isolate as `__wdl/tail.js`; `__wdl/main.js` exports
// `__WdlTail = tailRunner(tenantDefault)` and the gateway's tail consumer
// (workerd/gateway/tail.js) calls `__WdlTail.deliver(events)` with a batch of
// TraceItems of the namespace's producers. Its own invocations are never fed to a
// tail consumer (the gateway recognises the entrypoint), so tail workers tailing
// each other or themselves cannot loop.
//
// A delivery runs inside a request name of its own (requests.js), which the gateway
// knows is a tail delivery: a service binding called from tail() carries it, and the
// gateway then runs the target through `relay` below, this same export, so the
// target's invocation never feeds a tail consumer either. Without that, a tail
// worker calling its own producer made one request an endless stream of invocations
// (tests/security/test_redteam_fullstack.py).
import { WorkerEntrypoint } from "cloudflare:workers";
import { invokeExport, runNamed } from "./requests.js";

export function tailRunner(tenantDefault, tenantExports) {
  return class extends WorkerEntrypoint {
    async deliver(events, name) {
      return runNamed(name, () => this.run(events));
    }

    // A call to this worker made from inside a tail() delivery (gateway.js WdlService):
    // `method` ("fetch" or an RPC method) of the entrypoint `entrypoint` ("" default).
    async relay(entrypoint, method, args) {
      const target = entrypoint ? tenantExports[entrypoint] : tenantDefault;
      return invokeExport(target, this.ctx, this.env, method, Array.isArray(args) ? args : []);
    }

    async run(events) {
      const handler = tenantDefault;
      if (typeof handler === "function" && handler.prototype &&
          typeof handler.prototype.tail === "function") {
        // A class default export (WorkerEntrypoint): tail(events) on an instance.
        await new handler(this.ctx, this.env).tail(events);
        return { handled: true };
      }
      if (handler && typeof handler.tail === "function") {
        await handler.tail(events, this.env, this.ctx);
        return { handled: true };
      }
      return { handled: false };
    }
  };
}
