// WdlKv: the gateway entrypoint behind every tenant KV binding.
//
// The gateway hands tenant code `ctx.exports.WdlKv({props})`; props
// ({namespace, resource, worker, version}) are set by the platform, so a tenant
// can only address its own KV namespace. Each RPC method is one request to the
// data service's /kv routes (services/kv/routes.py, protocol in docs/kv.md) and
// answers plain values that the tenant wrapper (workerd/tenant/kv.js) shapes into
// the Workers KV API. Refusals come back as `{error: {status, message}}` rather
// than thrown, so their text reaches the tenant exactly (the wrapper throws them
// as workerd does: `KV <OP> failed: <status> <message>`). Nothing is cached here:
// every read sees every acknowledged write (docs/compatibility.md, ## KV).

import { WorkerEntrypoint } from "cloudflare:workers";

const METADATA = "x-kv-metadata";
const EXPIRATION = "x-kv-expiration";

async function refusal(response) {
  let message = response.statusText || "Internal Server Error";
  try {
    const body = await response.json();
    if (body && typeof body.message === "string") message = body.message;
  } catch {
    // not from the data routes (a proxy, a crash): keep the status text
  }
  return { error: { status: response.status, message } };
}

const UNREACHABLE = { error: { status: 503, message: "KV data service unavailable" } };

export class WdlKv extends WorkerEntrypoint {
  #base() {
    const { namespace, resource } = this.ctx.props;
    return `http://data/kv/${encodeURIComponent(namespace)}/${encodeURIComponent(resource)}/`;
  }

  async #send(path, init = {}) {
    const headers = { "x-wdl-internal-token": this.env.INTERNAL_TOKEN, ...init.headers };
    try {
      return await this.env.DATA.fetch(this.#base() + path, { ...init, headers });
    } catch {
      return null;
    }
  }

  // -> null | {value, metadata: JSON text | null, expiration?} | {error}
  // type "json" answers the text: the tenant parses it, so a SyntaxError is its own.
  async get(key, type) {
    const r = await this.#send("v/" + encodeURIComponent(key));
    if (r === null) return UNREACHABLE;
    if (r.status === 404 && r.headers.has("x-kv-missing")) return null;
    if (!r.ok) return refusal(r);
    const meta = r.headers.get(METADATA);
    const exp = r.headers.get(EXPIRATION);
    let value;
    if (type === "stream") value = r.body;
    else if (type === "arrayBuffer") value = await r.arrayBuffer();
    else value = await r.text();
    return {
      value,
      metadata: meta === null ? null : decodeURIComponent(meta),
      expiration: exp === null ? undefined : Number(exp),
    };
  }

  // -> {entries: {key: null | [text, metadata JSON text | null]}} | {error}
  async getBulk(keys, withMetadata) {
    const r = await this.#send(withMetadata ? "bulk?metadata=1" : "bulk", {
      method: "POST",
      body: JSON.stringify(keys),
      headers: { "content-type": "application/json" },
    });
    if (r === null) return UNREACHABLE;
    if (!r.ok) return refusal(r);
    return { entries: await r.json() };
  }

  // value: string | ArrayBuffer | ReadableStream (streamed on, not buffered here).
  // options: {expiration?, expirationTtl?, metadata?: JSON text}. -> null | {error}
  async put(key, value, options = {}) {
    const query = new URLSearchParams();
    if (options.expirationTtl !== undefined) query.set("expiration_ttl", String(options.expirationTtl));
    else if (options.expiration !== undefined) query.set("expiration", String(options.expiration));
    const headers = {};
    if (typeof options.metadata === "string") headers[METADATA] = encodeURIComponent(options.metadata);
    const qs = query.size ? "?" + query : "";
    const r = await this.#send("v/" + encodeURIComponent(key) + qs, { method: "PUT", body: value, headers });
    if (r === null) return UNREACHABLE;
    if (!r.ok) return refusal(r);
    return null;
  }

  async delete(key) {
    const r = await this.#send("v/" + encodeURIComponent(key), { method: "DELETE" });
    if (r === null) return UNREACHABLE;
    if (!r.ok) return refusal(r);
    return null;
  }

  // -> {json: the list result as JSON text} | {error}; the tenant parses it (one parse,
  // no structured clone of a thousand keys).
  async list(options = {}) {
    const query = new URLSearchParams();
    if (options.prefix) query.set("prefix", options.prefix);
    if (options.limit !== undefined) query.set("limit", String(options.limit));
    if (options.cursor) query.set("cursor", options.cursor);
    const qs = query.size ? "?" + query : "";
    const r = await this.#send("keys" + qs);
    if (r === null) return UNREACHABLE;
    if (!r.ok) return refusal(r);
    return { json: await r.text() };
  }
}
