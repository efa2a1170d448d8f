// WdlR2: the gateway entrypoint behind every tenant R2 binding.
//
// The gateway hands tenant code `ctx.exports.WdlR2({props})`; props
// ({namespace, resource, worker, version}) are set by the platform, so a tenant can only
// ever address its own bucket. Each RPC method calls the data service's /r2 routes
// (services/r2/routes.py) and answers plain values the tenant wrapper
// (workerd/tenant/r2.js) turns into R2 objects: `{object}`, `{object, body}` or
// `{error: {code, message}}` (R2's numeric code). Bodies are ReadableStreams both ways,
// so nothing is buffered here.

import { WorkerEntrypoint } from "cloudflare:workers";

const REQUEST_HEADER = "x-wdl-r2-request";
const OBJECT_HEADER = "x-wdl-r2-object";
const INTERNAL = { code: 10001, message: "We encountered an internal error. Please try again." };

function b64urlJson(value) {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin).replaceAll("+", "-").replaceAll("/", "_").replaceAll("=", "");
}

function fromB64urlJson(text) {
  const bin = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

async function errorOf(response) {
  try {
    const body = await response.json();
    if (body && body.error) {
      if (body.error.code === "r2_bucket_not_found") {
        return { error: { code: 10006, message: body.error.message }, object: null };
      }
      return { error: { code: body.error.code, message: body.error.message }, object: body.object ?? null };
    }
  } catch {
    // not ours (a proxy, a crash): fall through to R2's internal error
  }
  return { error: INTERNAL, object: null };
}

export class WdlR2 extends WorkerEntrypoint {
  #url(op) {
    const { namespace, resource } = this.ctx.props;
    return `http://data/r2/${encodeURIComponent(namespace)}/${encodeURIComponent(resource)}/${op}`;
  }

  async #send(op, init) {
    const headers = { "x-wdl-internal-token": this.env.INTERNAL_TOKEN, ...init.headers };
    try {
      return await this.env.DATA.fetch(this.#url(op), { ...init, headers });
    } catch {
      return null;
    }
  }

  async #json(op, body) {
    const response = await this.#send(op, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (response === null) return { error: INTERNAL };
    if (!response.ok) return errorOf(response);
    return response.json();
  }

  async #upload(op, request, value) {
    const response = await this.#send(op, {
      method: "PUT",
      headers: { [REQUEST_HEADER]: b64urlJson(request), "content-type": "application/octet-stream" },
      body: value ?? new Uint8Array(0),
    });
    if (response === null) return { error: INTERNAL };
    if (!response.ok) return errorOf(response);
    return response.json();
  }

  head(key) {
    return this.#json("head", { key });
  }

  async get(key, options = {}) {
    const response = await this.#send("get", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ key, ...options }),
    });
    if (response === null) return { error: INTERNAL };
    if (response.status === 404) {
      const failed = await errorOf(response);
      return failed.error.code === 10007 ? { object: null } : failed;
    }
    if (!response.ok) return errorOf(response);
    const object = fromB64urlJson(response.headers.get(OBJECT_HEADER));
    return { object, body: response.body };
  }

  put(key, value, options = {}) {
    return this.#upload("put", { key, ...options }, value);
  }

  delete(keys) {
    return this.#json("delete", { keys });
  }

  list(options = {}) {
    return this.#json("list", options);
  }

  createMultipartUpload(key, options = {}) {
    return this.#json("mpu/create", { key, ...options });
  }

  uploadPart(key, uploadId, partNumber, value) {
    return this.#upload("mpu/part", { key, uploadId, partNumber }, value);
  }

  completeMultipartUpload(key, uploadId, parts) {
    return this.#json("mpu/complete", { key, uploadId, parts });
  }

  abortMultipartUpload(key, uploadId) {
    return this.#json("mpu/abort", { key, uploadId });
  }
}
