// Self stubs: `exports.X({props})` of "cloudflare:workers" in a tenant (issue 25,
// Dynamic Workflows). The tenant is itself a dynamically loaded worker, and workerd
// refuses to transfer a loaded worker's own `exports` stubs anywhere (verified on the
// pinned workerd 1.20261117.1), so the platform mints them instead: the tenant's
// `__wdl/workers.js` (tenant/workers.js) calls WdlSelfBinding.mint(X, props), which
// answers `ctx.exports.WdlSelf({props: {namespace, worker, version, entrypoint, props}})`
// - a stub of the gateway, which workerd does transfer (into a child's env, over RPC).
//
// Isolation: namespace, worker and version are the props the gateway set when it
// loaded the minting version (gateway.js fetchCode), never tenant input; the tenant
// chooses only the entrypoint name (an identifier of its own version) and the props
// its own entrypoint sees as `ctx.props`. A stub keeps calling the version that
// minted it (pinned), as a Cloudflare self stub belongs to the version that made it.
//
// Served by the gateway and by the objects process (Durable Objects' `exports`), each
// with its own way to load a version (setSelfLoader): this module imports nothing of
// either.
import { WorkerEntrypoint } from "cloudflare:workers";
// The asm.js build: workerd refuses to compile WebAssembly at run time.
import { parse } from "./es-module-lexer.js";

const NAME_RE = /^[A-Za-z_$][A-Za-z0-9_$]{0,127}$/;
export const MAX_SELF_PROPS = 64 * 1024;  // bytes of JSON
// Names a Proxy must not answer: promise-likeness and the stub's own machinery.
const NOT_METHODS = new Set(["then", "catch", "finally", "constructor", "toJSON", "ctx",
                             "env", "dup", "fetch"]);

let loadVersion = null;  // (env, ctx, ns, worker, version, via?) -> WorkerStub
// (env, ctx, ns, worker, version, method, run) -> run()'s answer: admission, metrics.
let around = (env, ctx, ns, worker, version, method, run) => run();

export function setSelfLoader(load, wrap) {
  loadVersion = load;
  if (wrap) around = wrap;
}

// Rewrites "cloudflare:workers" and "cloudflare:sockets" in the tenant's own ES modules
// (`modules`: name -> {js}|…, before the platform's are added) to the platform's
// `__wdl/workers.js` (self stubs) and `__wdl/sockets.js` (connect() named after the
// request, for its subrequest budget: tenant/sockets.js). Only the specifiers of
// imports and re-exports: `from "…"`, `import "…"`, `import("…")`. The same text in a
// string, a template, a comment or a regular expression is the tenant's data and stays
// as written (a plain regex replace rewrote them all: a tenant's
// `/from "cloudflare:workers"/` then no longer parsed, and strings it served or handed
// to a child changed). es-module-lexer (Vite's and Node's ESM lexer) tells them apart.
const REWRITES = { "cloudflare:workers": "__wdl/workers.js",
                   "cloudflare:sockets": "__wdl/sockets.js" };
const SPECIFIERS = Object.keys(REWRITES);

function relativeTo(from, to) {
  const up = from.split("/").length - 1;
  return (up ? "../".repeat(up) : "./") + to;
}

// `src` with each import specifier that `targets` names (specifier -> replacement)
// replaced.
export function rewriteSpecifiers(src, targets) {
  let found;
  try {
    [found] = parse(src);
  } catch {
    // Not a module the lexer reads: left as written, workerd reports its syntax error.
    return src;
  }
  let out = "";
  let copied = 0;
  for (const imp of found) {
    const to = imp.specifier !== undefined && Object.hasOwn(targets, imp.specifier)
      ? targets[imp.specifier] : undefined;
    if (to === undefined) continue;
    // A static specifier's span excludes its quotes, a dynamic import's argument includes them.
    const [start, end] = imp.type === "dynamic" ? [imp.start + 1, imp.end - 1]
      : [imp.start, imp.end];
    out += src.slice(copied, start) + to;
    copied = end;
  }
  return out + src.slice(copied);
}

export function selfExports(modules) {
  for (const [name, m] of Object.entries(modules)) {
    if (m === null || typeof m.js !== "string") continue;
    if (!SPECIFIERS.some((s) => m.js.includes(s))) continue;
    const targets = {};
    for (const s of SPECIFIERS) targets[s] = relativeTo(name, REWRITES[s]);
    modules[name] = { js: rewriteSpecifiers(m.js, targets) };
  }
}

export function checkEntrypoint(name) {
  if (typeof name !== "string" || !NAME_RE.test(name) || name.startsWith("__")) {
    throw new TypeError(`exports: ${JSON.stringify(String(name)).slice(0, 140)} is not an ` +
      "entrypoint of this Worker (an identifier of at most 128 characters, not starting " +
      "with __)");
  }
}

export function checkProps(props) {
  if (props === undefined) return undefined;
  let text;
  try {
    text = JSON.stringify(props);
  } catch (err) {
    throw new TypeError(`exports: props must be JSON-serializable: ${err && err.message}`);
  }
  if (text === undefined) throw new TypeError("exports: props must be JSON-serializable");
  if (text.length > MAX_SELF_PROPS) {
    throw new TypeError(`exports: props are ${text.length} bytes as JSON, more than ` +
      `${MAX_SELF_PROPS}`);
  }
  return JSON.parse(text);
}

// env.__WDL_SELF of every version the gateway loads (props: {namespace, worker, version}).
export class WdlSelfBinding extends WorkerEntrypoint {
  mint(entrypoint, props) {
    checkEntrypoint(entrypoint);
    const { namespace, worker, version, via } = this.ctx.props;
    const minted = { namespace, worker, version, entrypoint, props: checkProps(props) };
    if (via) minted.via = via;  // a dispatched user worker's outbound (gateway dispatch.js)
    return this.ctx.exports.WdlSelf({ props: minted });
  }
}

// A minted stub: any method name is forwarded to the entrypoint of the pinned version
// (workerd looks an RPC method up on the object the constructor returns).
export class WdlSelf extends WorkerEntrypoint {
  constructor(ctx, env) {
    super(ctx, env);
    return new Proxy(this, {
      get: (target, prop, receiver) => {
        if (prop === "fetch") return (request) => this.#call("fetch", [request]);
        if (typeof prop !== "string" || NOT_METHODS.has(prop) || prop.startsWith("__")) {
          return Reflect.get(target, prop, receiver);
        }
        return (...args) => this.#call(prop, args);
      },
    });
  }

  async #call(method, args) {
    const { namespace, worker, version, entrypoint, props, via } = this.ctx.props;
    if (loadVersion === null) throw new Error("self stubs are not served by this process");
    const stub = await loadVersion(this.env, this.ctx, namespace, worker, version, via);
    const options = props === undefined ? {} : { props };
    const target = entrypoint === "default" ? stub.getEntrypoint(undefined, options)
      : stub.getEntrypoint(entrypoint, options);
    return around(this.env, this.ctx, namespace, worker, version, method,
                  () => target[method](...args));
  }
}
