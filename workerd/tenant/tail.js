// Tail Workers: how the gateway calls a tenant's tail(events, env, ctx). Delivered to
// the tenant isolate as `__wdl/tail.js`; `__wdl/main.js` exports
// `__WdlTail = tailRunner(tenantDefault)` and the gateway's tail consumer
// (workerd/gateway/tail.js) calls `__WdlTail.deliver(events)` with a batch of
// TraceItems of the namespace's producers. Its own invocations are never fed to a
// tail consumer (the gateway recognises the entrypoint), so tail workers tailing
// each other or themselves cannot loop.
import { WorkerEntrypoint } from "cloudflare:workers";

export function tailRunner(tenantDefault) {
  return class extends WorkerEntrypoint {
    async deliver(events) {
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
