// WdlWorkflow: the gateway entrypoint behind every tenant Workflow binding.
//
// Props ({namespace, worker, version, workflow, class_name}) come from the
// accepted version (services/state/bundles.py): a tenant can only create and
// address instances of its own workflows, and new instances are pinned to the
// version holding the binding. Each method is one call to the workflows engine
// (`WORKFLOWS`, loopback HTTP guarded by the internal token; protocol in
// docs/workflows.md). Refusals come back as `{refused: {name, message}}` for the
// tenant wrapper (workerd/tenant/workflows.js) to throw.
import { WorkerEntrypoint } from "cloudflare:workers";

const UNREACHABLE = { refused: { name: "Error", message: "the workflows engine is unavailable" } };

export class WdlWorkflow extends WorkerEntrypoint {
  async #rpc(body) {
    const { namespace, workflow, worker, version, class_name } = this.ctx.props;
    let r;
    try {
      r = await this.env.WORKFLOWS.fetch("http://workflows/rpc", {
        method: "POST",
        headers: { "x-wdl-internal-token": this.env.INTERNAL_TOKEN,
                   "content-type": "application/json" },
        body: JSON.stringify({ ...body, namespace, workflow, worker, version, class_name }),
      });
    } catch {
      return UNREACHABLE;
    }
    let doc;
    try {
      doc = await r.json();
    } catch {
      return UNREACHABLE;
    }
    if (!r.ok) return { refused: { name: "Error", message: doc.message || doc.error } };
    return doc;
  }

  create(items) {
    return this.#rpc(items.length === 1 ? { op: "create", options: items[0] }
      : { op: "createBatch", items });
  }

  status(id) { return this.#rpc({ op: "status", id }); }

  control(id, op) {
    if (!["pause", "resume", "terminate", "restart"].includes(op)) {
      return { refused: { name: "TypeError", message: `unknown operation ${op}` } };
    }
    return this.#rpc({ op, id });
  }

  sendEvent(id, event) {
    return this.#rpc({ op: "sendEvent", id, type: event.type, payload: event.payload });
  }
}
