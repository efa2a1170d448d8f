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

// Rewrites "cloudflare:workers" in the tenant's own ES modules (`modules`: name ->
// {js}|…, before the platform's are added) to the platform's `__wdl/workers.js`. Only
// static specifiers in code: `from "…"`, `import "…"`, `import("…")`. The same text in a
// string, a template, a comment or a regular expression is the tenant's data and stays as
// written (a plain regex replace rewrote them all: a tenant's `/from "cloudflare:workers"/`
// then no longer parsed, and strings it served or handed to a child changed).
const SPECIFIER = "cloudflare:workers";
const WORD = /[A-Za-z0-9_$\u0080-\uffff]/;
// After these words an expression starts, so `/` opens a regular expression.
const BEFORE_EXPRESSION = new Set(["return", "typeof", "case", "do", "else", "in", "of",
  "instanceof", "new", "delete", "void", "throw", "yield", "await", "export", "default"]);

function relativeTo(from, to) {
  const up = from.split("/").length - 1;
  return (up ? "../".repeat(up) : "./") + to;
}

// The end of the quoted string at `i` (its opening quote), escapes skipped.
function stringEnd(src, i) {
  const q = src[i];
  let j = i + 1;
  while (j < src.length && src[j] !== q && src[j] !== "\n") j += src[j] === "\\" ? 2 : 1;
  return j + 1;
}

// The end of the regular expression literal at `i` (its `/`), classes and flags included.
function regexEnd(src, i) {
  let j = i + 1;
  let inClass = false;
  while (j < src.length && src[j] !== "\n") {
    const c = src[j];
    if (c === "\\") j += 1;
    else if (c === "[") inClass = true;
    else if (c === "]") inClass = false;
    else if (c === "/" && !inClass) break;
    j += 1;
  }
  j += 1;
  while (j < src.length && WORD.test(src[j])) j += 1;
  return j;
}

export function rewriteSpecifier(src, to) {
  let out = "";
  let copied = 0;
  const tokens = ["", "", ""];  // the last three significant tokens
  const push = (t) => { tokens.shift(); tokens.push(t); };
  const templates = [];  // open `${` of templates: the brace depth each resumes at
  let depth = 0;
  let i = 0;
  const template = () => {  // from inside a template's text to its end or next `${`
    while (i < src.length) {
      const c = src[i];
      if (c === "\\") { i += 2; continue; }
      if (c === "`") { i += 1; push("`"); return; }
      if (c === "$" && src[i + 1] === "{") { i += 2; templates.push(depth); push("{"); return; }
      i += 1;
    }
  };
  while (i < src.length) {
    const c = src[i];
    if (c === " " || c === "\t" || c === "\n" || c === "\r") { i += 1; continue; }
    if (c === "/" && src[i + 1] === "/") {
      const end = src.indexOf("\n", i);
      i = end < 0 ? src.length : end;
      continue;
    }
    if (c === "/" && src[i + 1] === "*") {
      const end = src.indexOf("*/", i + 2);
      i = end < 0 ? src.length : end + 2;
      continue;
    }
    if (c === "'" || c === '"') {
      const end = stringEnd(src, i);
      const [a, b, last] = tokens;
      if (src.slice(i + 1, end - 1) === SPECIFIER &&
          ((last === "from") || (last === "import" && b !== ".") ||
           (last === "(" && b === "import" && a !== "."))) {
        out += src.slice(copied, i + 1) + to;
        copied = end - 1;
      }
      i = end;
      push("string");
      continue;
    }
    if (c === "`") { i += 1; template(); continue; }
    if (c === "{") { depth += 1; i += 1; push("{"); continue; }
    if (c === "}") {
      if (templates.length && templates[templates.length - 1] === depth) {
        templates.pop();
        i += 1;
        template();
        continue;
      }
      depth -= 1;
      i += 1;
      push("}");
      continue;
    }
    if (c === "/") {
      const last = tokens[2];
      const afterValue = last === ")" || last === "]" || last === "string" || last === "`" ||
        (WORD.test(last[0] || "") && !BEFORE_EXPRESSION.has(last));
      if (!afterValue) {
        i = regexEnd(src, i);
        push("regex");
        continue;
      }
    }
    if (WORD.test(c)) {
      let j = i + 1;
      while (j < src.length && WORD.test(src[j])) j += 1;
      push(src.slice(i, j));
      i = j;
      continue;
    }
    push(c);
    i += 1;
  }
  return out + src.slice(copied);
}

export function selfExports(modules) {
  for (const [name, m] of Object.entries(modules)) {
    if (m === null || typeof m.js !== "string" || !m.js.includes(SPECIFIER)) continue;
    modules[name] = { js: rewriteSpecifier(m.js, relativeTo(name, "__wdl/workers.js")) };
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
