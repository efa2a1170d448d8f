// WdlLoader: the gateway entrypoint behind a tenant's `worker_loaders` binding
// (Dynamic Worker Loader API; the tenant wrapper is workerd/tenant/loader.js).
//
// workerd refuses to hand a dynamically loaded worker's entrypoints to another
// worker, so the tenant never holds its children: every fetch()/RPC call on a
// child comes here and the gateway forwards it, which is what lets the platform
// keep children inside their parent's sandbox (docs/loaders.md):
// * ids are scoped by the props the platform set: the gateway's key for a child
//   is `<ns>:<worker>:<version>:child:<sha-256 of the tenant's id>`, so a
//   tenant of another namespace (or another version) using the same id string
//   gets another isolate; named children are kept (and evicted) by WdlChildren
//   (children.js), loaded unnamed so that workerd can release them;
// * the child's network is its parent's egress (WdlEgress with the parent's
//   props), nothing (`null`), or a service binding of the parent;
// * code is validated here (experimental/unsafe features refused); a failing
//   callback fails one call and a child that fails to start is dropped, so a
//   fixed callback loads it again on the next call.
import { WorkerEntrypoint } from "cloudflare:workers";
import TENANT_SHIM from "./shim_sources.js";
import refusedFlags from "./refused-flags.json";
import { released } from "./collect.js";
import { rewriteSpecifiers } from "./self.js";

// The pinned workerd's experimental flags (workerd/compatibility-flags.json): the data
// plane runs with --experimental, which a tenant's Worker must never inherit.
const EXPERIMENTAL = new Set(refusedFlags.experimental);
// Python Workers: loading one makes workerd fetch packages from the network.
const UNSUPPORTED = new Set(refusedFlags.unsupported);
// The platform's name prefixes (eventlog/validation.py RESERVED_PREFIXES), in any case.
const RESERVED = ["__wdl", "_wdl_", "_cf_"];

function reservedPrefix(name) {
  const lowered = name.toLowerCase();
  return RESERVED.find((p) => lowered.startsWith(p));
}

const MAX_ID_LENGTH = 1024;
const MAX_MODULES = 256;
const MODULE_KINDS = new Set(["js", "cjs", "py", "text", "data", "json", "wasm"]);
const FLAG_RE = /^[a-z0-9_]{1,128}$/;
const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;
const ALLOWED_KEYS = new Set(["compatibilityDate", "compatibilityFlags", "mainModule",
  "modules", "env", "globalOutbound", "kinds", "outbound", "allowExperimental"]);

async function digest(text) {
  const bytes = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(bytes)].slice(0, 16).map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}

function refuse(message) {
  return new TypeError(`Dynamic Worker Loader: ${message}`);
}

function moduleOf(name, value) {
  if (typeof value === "string") {
    if (name.endsWith(".js") || name.endsWith(".mjs")) return { js: value };
    if (name.endsWith(".py")) return { py: value };
    throw refuse(`module ${JSON.stringify(name)}: a string module must be named *.js or ` +
      "*.py (or given as {js|cjs|py|text|data|json|wasm: ...})");
  }
  if (value === null || typeof value !== "object") {
    throw refuse(`module ${JSON.stringify(name)} is not a string or a module object`);
  }
  const keys = Object.keys(value);
  if (keys.length !== 1 || !MODULE_KINDS.has(keys[0])) {
    throw refuse(`module ${JSON.stringify(name)} must have exactly one of ` +
      "js, cjs, py, text, data, json, wasm");
  }
  return value;
}

function relativeTo(from, to) {
  const up = from.split("/").length - 1;
  return (up ? "../".repeat(up) : "./") + to;
}

// The child's WorkerCode as the gateway hands it to workerd: validated, with the
// tenant shim in front of an ES-module entry and the binding stubs it passed on.
export function childCode(raw, defaultOutbound) {
  if (raw === null || typeof raw !== "object") throw refuse("the code must be an object");
  for (const key of Object.keys(raw)) {
    if (!ALLOWED_KEYS.has(key)) throw refuse(`WorkerCode field ${key} is not supported by WDL`);
  }
  if (raw.allowExperimental) {
    throw refuse("allowExperimental is not allowed for WDL tenants");
  }
  if (typeof raw.compatibilityDate !== "string" || !DATE_RE.test(raw.compatibilityDate)) {
    throw refuse("compatibilityDate must be a date like \"2025-06-01\"");
  }
  const flags = raw.compatibilityFlags === undefined ? [] : raw.compatibilityFlags;
  if (!Array.isArray(flags) || flags.length > 64) {
    throw refuse("compatibilityFlags must be a list of at most 64 flags");
  }
  for (const flag of flags) {
    if (typeof flag !== "string" || !FLAG_RE.test(flag)) {
      throw refuse(`${JSON.stringify(flag)} is not a compatibility flag`);
    }
    if (EXPERIMENTAL.has(flag) || flag.startsWith("experimental") || flag.startsWith("unsafe")) {
      throw refuse(`compatibility flag ${flag} is experimental or unsafe and not allowed ` +
        "for WDL tenants");
    }
    if (UNSUPPORTED.has(flag)) {
      throw refuse(`compatibility flag ${flag} is for Python Workers, which WDL does not run`);
    }
  }
  if (raw.modules === null || typeof raw.modules !== "object") {
    throw refuse("modules must be an object of module name -> content");
  }
  const names = Object.keys(raw.modules);
  if (names.length === 0 || names.length > MAX_MODULES) {
    throw refuse(`a Worker needs between 1 and ${MAX_MODULES} modules`);
  }
  const modules = {};
  for (const name of names) {
    const bare = name.replace(/^(\.\/)+/, "");
    const prefix = bare.toLowerCase().startsWith("__wdl/") ? "__wdl/" : reservedPrefix(bare);
    if (prefix) throw refuse(`module names starting with ${prefix} are reserved (in any case)`);
    modules[name] = moduleOf(name, raw.modules[name]);
  }
  if (typeof raw.mainModule !== "string") throw refuse("mainModule must be a module name");
  if (!(raw.mainModule in modules)) {
    // workerd's words for it, without a poisoned id.
    throw new Error(`Failed to start Worker:\nUncaught Error: No such module: ${raw.mainModule}`);
  }
  const env = {};
  const given = raw.env === undefined ? {} : raw.env;
  if (given === null || typeof given !== "object") throw refuse("env must be an object");
  for (const [name, value] of Object.entries(given)) {
    const prefix = reservedPrefix(name);
    if (prefix) {
      throw refuse(`env names starting with ${prefix.toUpperCase()} are reserved (in any case)`);
    }
    env[name] = value;
  }
  const kinds = {};
  for (const [name, kind] of Object.entries(raw.kinds || {})) {
    if (name in env && typeof kind === "string") kinds[name] = kind;
  }
  let mainModule = raw.mainModule;
  let compatibilityFlags = flags;
  if (modules[mainModule].js !== undefined) {
    // As for a deployed version (gateway.js tenantModules): the shim turns the
    // parent's binding stubs into API objects, requests.js names fetches.
    const spec = JSON.stringify(relativeTo("__wdl/main.js", mainModule));
    // The child's `cloudflare:sockets` is the platform's too (self.js rewriteSpecifiers):
    // its connect() inside the parent's request carries that request's name, so the
    // connection counts against the parent's subrequest budget as the child's fetch()
    // does. Without it a child opened any number past the budget.
    for (const [name, m] of Object.entries(modules)) {
      if (m && typeof m.js === "string" && m.js.includes("cloudflare:sockets")) {
        modules[name] = { js: rewriteSpecifiers(m.js, {
          "cloudflare:sockets": relativeTo(name, "__wdl/sockets.js") }) };
      }
    }
    Object.assign(modules, TENANT_SHIM);
    modules["__wdl/main.js"] = `import "./shim.js";\nimport { wrapDefault } from "./requests.js";\n` +
      `import * as tenant from ${spec};\nexport * from ${spec};\n` +
      `export default wrapDefault(tenant.default ?? {});\n`;
    mainModule = "__wdl/main.js";
    if (!flags.includes("nodejs_als") && !flags.includes("nodejs_compat")) {
      compatibilityFlags = [...flags, "nodejs_als"];
    }
    if (Object.keys(kinds).length) env.__WDL_BINDINGS = kinds;
  }
  let globalOutbound = defaultOutbound;
  if (raw.globalOutbound === null) globalOutbound = null;
  else if (raw.globalOutbound !== undefined) {
    // Only a service binding of the parent arrives here (the wrapper refuses the rest):
    // its target runs under its own namespace's egress policy.
    if (raw.outbound !== "service") {
      throw refuse("globalOutbound must be null or a service binding of the parent Worker");
    }
    globalOutbound = raw.globalOutbound;
  }
  return { compatibilityDate: raw.compatibilityDate, compatibilityFlags, mainModule, modules,
           env, globalOutbound };
}

export function startFailure(err) {
  const text = String(err && err.message || err);
  return text.includes("Failed to start Worker") || text.includes("No such compatibility flag") ||
    text.includes("requires compatibility date") || text.includes("Module name must");
}

// The props of a child's egress: its parent's namespace and worker, and for a dispatched
// user worker the outbound Worker it runs under (`via`, dispatch.js), so its children
// fetch through that outbound Worker too.
export function egressProps({ namespace, worker, via }) {
  return via ? { namespace, worker, via } : { namespace, worker };
}

// The entrypoint of a child's WorkerStub that a handle names.
export function entrypointOf(stub, handle) {
  const name = handle.name === undefined || handle.name === null ? undefined : handle.name;
  if (name !== undefined && (typeof name !== "string" || name.startsWith("__"))) {
    throw refuse(`${String(name)} is not an entrypoint name`);
  }
  return handle.props === undefined ? stub.getEntrypoint(name)
    : stub.getEntrypoint(name, { props: handle.props });
}

export class WdlLoader extends WorkerEntrypoint {
  // -> [run(call)]: runs `call(entrypoint)` on the child the handle names.
  async #child(handle) {
    if (handle === null || typeof handle !== "object" || typeof handle.code !== "function") {
      throw refuse("malformed call");
    }
    if (handle.id === null) {
      // load(): a fresh isolate workerd releases again, nothing to scope or keep.
      const outbound = this.ctx.exports.WdlEgress({ props: egressProps(this.ctx.props) });
      const code = childCode(await handle.code(), outbound);
      return { load: this.env.LOADER.load(code) };
    }
    const { namespace, worker, version } = this.ctx.props;
    if (typeof handle.id !== "string" || handle.id.length === 0 ||
        handle.id.length > MAX_ID_LENGTH) {
      throw refuse(`the id must be a non-empty string of at most ${MAX_ID_LENGTH} characters`);
    }
    // Scoped by the props the platform set: the same id elsewhere is another child.
    // Under an outbound Worker a child is an isolate of its own: one loaded without it
    // (the user worker served at its own route) must not be reused by a dispatched call.
    const via = this.ctx.props.via;
    const key = `${namespace}:${worker}:${version}:child:${await digest(handle.id)}` +
      (via ? `:via:${await digest(JSON.stringify(via))}` : "");
    return { key, keeper: this.env.CHILDREN.get(namespace), props: egressProps(this.ctx.props) };
  }

  async fetchChild(handle, request) {
    const child = await this.#child(handle);
    if (child.load) {
      try {
        return await entrypointOf(child.load, handle).fetch(request);
      } finally {
        released();
      }
    }
    return child.keeper.fetchChild(child.props, child.key, handle, request);
  }

  async callChild(handle, method, args) {
    if (typeof method !== "string" || method === "fetch" || method.startsWith("__")) {
      throw new TypeError(`${String(method)} is not an RPC method`);
    }
    const list = Array.isArray(args) ? args : [];
    const child = await this.#child(handle);
    if (child.load) {
      try {
        return await entrypointOf(child.load, handle)[method](...list);
      } finally {
        released();
      }
    }
    return child.keeper.callChild(child.props, child.key, handle, method, list);
  }
}
