// WdlRatelimit: the gateway entrypoint behind every tenant rate limit binding
// (`[[ratelimits]]`; the tenant side is workerd/tenant/ratelimit.js).
//
// Props ({namespace, namespace_id, limit, period, worker, version}) are set by the
// platform (eventlog/bindings/ratelimit.py), so a tenant counts only in its own
// namespace. The tenant's key never reaches a store as it is: it is hashed here
// (SHA-256 of its UTF-8), so any key — huge, empty, full of separators — is one
// 64-hex-digit name, and the data service (services/ratelimit/) accepts nothing
// else. One call is one request to the data service's /ratelimit route with the
// internal token; it answers {success} or a refusal that the wrapper throws.

import { WorkerEntrypoint } from "cloudflare:workers";

const utf8 = new TextEncoder();
const LIMIT_MAX = 1_000_000_000;
const PERIODS = [10, 60];

async function digest(key) {
  const bytes = new Uint8Array(await crypto.subtle.digest("SHA-256", utf8.encode(key)));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// The window's count is a whole number: `count >= 2.5` is `count >= 3`; below 0
// nothing passes, and past the platform's cap nothing is ever limited anyway.
function wholeLimit(limit) {
  return Math.min(LIMIT_MAX, Math.max(0, Math.ceil(limit)));
}

export class WdlRatelimit extends WorkerEntrypoint {
  // -> {success} | {error: message}
  async limit(key, limit, period) {
    const props = this.ctx.props;
    const useLimit = limit === undefined ? props.limit : limit;
    const usePeriod = period === undefined ? props.period : period;
    if (typeof key !== "string") return { error: `invalid key: ${key}` };
    if (typeof useLimit !== "number" || !Number.isFinite(useLimit)) {
      return { error: `limit must be a number: ${useLimit}` };
    }
    if (!PERIODS.includes(usePeriod)) return { error: `unsupported period: ${usePeriod}` };
    const url = `http://data/ratelimit/${encodeURIComponent(props.namespace)}/` +
      `${encodeURIComponent(props.namespace_id)}/limit`;
    let response;
    try {
      response = await this.env.DATA.fetch(url, {
        method: "POST",
        headers: { "x-wdl-internal-token": this.env.INTERNAL_TOKEN,
                   "content-type": "application/json" },
        body: JSON.stringify({ key: await digest(key), limit: wholeLimit(useLimit), period: usePeriod }),
      });
    } catch {
      return { error: "rate limit service unavailable" };
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      // not from the data route (a proxy, a crash)
    }
    if (!response.ok || !body || typeof body.success !== "boolean") {
      return { error: `rate limit failed: ${response.status} ${(body && body.message) || response.statusText}` };
    }
    return { success: body.success };
  }
}
