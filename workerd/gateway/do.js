// WdlDo: the gateway entrypoint behind every tenant Durable Object namespace binding.
//
// props ({namespace, worker, script, class_name}) are set by the platform from
// the accepted version (services/state/bundles.py), so a tenant addresses only
// objects of its own namespace's classes. Every call goes to the DO hosts
// (env.OBJECTS, services/objects/): the object lives in one host process, never in
// the gateway process that took the request (there are N of them). The host
// re-checks the id's tag against these props (workerd/objects/objects.js).
// RPC arguments and results travel as tagged JSON text, encoded and decoded by the
// tenant wrapper and the host (workerd/tenant/values.js encodeValue/decodeValue).

import { WorkerEntrypoint } from "cloudflare:workers";

function meta(props, id, name) {
  return JSON.stringify({ namespace: props.namespace, script: props.script,
                          class_name: props.class_name, id, name });
}

// The scope the tenant wrapper makes this binding's ids for (workerd/tenant/do.js);
// public: ids are opaque, the host re-checks their tag against the props.
export function info(props) {
  return `${props.namespace}/${props.script}/${props.class_name}`;
}

function unreachable(err) {
  return { error: { name: "Error", message: "Durable Object host unavailable: " +
                    String(err && err.message || err) } };
}

export class WdlDo extends WorkerEntrypoint {
  // -> {json} | {undefined: true} | {error: {name, message}}
  // The arguments' JSON text is the request body and the method a header, and the
  // host answers the result's JSON text as its body (x-wdl-do-result says which of
  // the three it is): no JSON-in-JSON on either side, so each value is encoded and
  // decoded once, by the tenant wrapper and the object.
  async call(id, name, method, argsJson) {
    if (typeof method !== "string" || method === "fetch" || method.startsWith("__")) {
      return { error: { name: "TypeError", message: `${String(method)} is not an RPC method` } };
    }
    let r;
    try {
      r = await this.env.OBJECTS.fetch("http://objects/__wdl/do/call", {
        method: "POST",
        headers: { "x-wdl-internal-token": this.env.INTERNAL_TOKEN,
                   "x-wdl-do": meta(this.ctx.props, id, name),
                   "x-wdl-do-method": encodeURIComponent(method),
                   "content-type": "application/json" },
        body: argsJson,
      });
    } catch (err) {
      return unreachable(err);
    }
    const text = await r.text();
    const kind = r.headers.get("x-wdl-do-result");
    if (kind === "json" && r.ok) return { json: text };
    if (kind === "undefined" && r.ok) return { undefined: true };
    try {
      return JSON.parse(text);  // {error} (or a host of the previous release)
    } catch {
      return { error: { name: "Error", message: `Durable Object host answered ${r.status}` } };
    }
  }

  // The stub's HTTP fetch: the tenant wrapper names the object in x-wdl-do-id/-name
  // (its own choice, like an RPC argument; the host checks the id against the props).
  async fetch(request) {
    const url = new URL(request.url);
    const headers = new Headers(request.headers);
    const id = headers.get("x-wdl-do-id") || "";
    const rawName = headers.get("x-wdl-do-name");
    const name = rawName === null ? null : decodeURIComponent(rawName);
    headers.delete("x-wdl-do-id");
    headers.delete("x-wdl-do-name");
    headers.set("x-wdl-internal-token", this.env.INTERNAL_TOKEN);
    headers.set("x-wdl-do", meta(this.ctx.props, id, name));
    headers.set("x-wdl-do-url", url.href);
    return this.env.OBJECTS.fetch(new Request("http://objects/__wdl/do/fetch", {
      method: request.method, headers, body: request.body, redirect: "manual" }));
  }
}
