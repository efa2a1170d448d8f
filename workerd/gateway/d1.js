// WdlD1: the gateway entrypoint behind every tenant D1 binding.
//
// The gateway hands tenant code `ctx.exports.WdlD1({props})`; props
// ({namespace, resource, worker, version}) are set by the platform from the
// accepted version, so a tenant can only address its own namespace's
// databases. `send` is one request to a D1 replica (services/d1/app.py, the
// env.D1 external service), which forwards it to the database's owner; the
// answer is Miniflare's D1 wire format as JSON text, parsed by the tenant
// wrapper (workerd/tenant/d1.js), so one parse and no structured clone of rows.

import { WorkerEntrypoint } from "cloudflare:workers";

const UNREACHABLE = JSON.stringify({ success: false, error: "D1 service unavailable" });
const ENDPOINTS = new Set(["query", "execute"]);

export class WdlD1 extends WorkerEntrypoint {
  // endpoint: "query" | "execute"; body: JSON text of {sql, params} or a list of them.
  // -> JSON text: one result or a list of them, or {success: false, error}.
  async send(endpoint, body, resultsFormat) {
    if (!ENDPOINTS.has(endpoint)) return JSON.stringify({ success: false, error: "unknown D1 operation" });
    const { namespace, resource } = this.ctx.props;
    const url = `http://d1/d1/${encodeURIComponent(namespace)}/${encodeURIComponent(resource)}/` +
      `${endpoint}?resultsFormat=${encodeURIComponent(resultsFormat)}`;
    let response;
    try {
      response = await this.env.D1.fetch(url, {
        method: "POST",
        body,
        headers: { "content-type": "application/json", "x-wdl-internal-token": this.env.INTERNAL_TOKEN },
      });
    } catch {
      return UNREACHABLE;
    }
    const text = await response.text();
    if (response.headers.get("content-type")?.startsWith("application/json")) return text;
    return JSON.stringify({ success: false, error: `D1 service answered ${response.status}` });
  }
}
