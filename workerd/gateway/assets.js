// Static Assets: a version's files served by the gateway itself, as Cloudflare serves
// them (developers.cloudflare.com/workers/static-assets/): html_handling redirects,
// not_found_handling, `_headers` and `_redirects` rules, strong ETags and 304s, Range,
// HEAD. A request the assets answer never enters the tenant's isolate; `run_worker_first`
// and the worker's `env.ASSETS.fetch()` (WdlAssets below) decide the rest.
//
// The manifest (path -> [digest, size, content type], parsed rules) comes from the
// state service by version (services/state/assets.py), the bytes by digest through an
// internal path that needs the internal token and serves only the namespace's own
// blobs. Manifests and small files are cached here: both are immutable.
import { WorkerEntrypoint } from "cloudflare:workers";
import { PlatformError, stateGet } from "./freshness.js";
import { internalHeaders } from "./internal.js";

const CACHE_CONTROL = "public, max-age=0, must-revalidate";
const MANIFESTS_KEPT = 256;
const SMALL_FILE = 64 * 1024;         // files up to this size are kept in memory
const SMALL_FILES_BYTES = 32 * 1024 * 1024;

const manifests = new Map();  // "ns:worker:version" -> Promise<compiled manifest>
const small = new Map();      // "ns\0digest" -> Uint8Array
let smallBytes = 0;

// --- manifest ------------------------------------------------------------------

function globRegExp(pattern, captures) {
  // `*` is a splat; with `captures`, `:name` a segment (Cloudflare's rules engine).
  let out = "";
  for (const piece of pattern.split("*")) {
    if (out) out += captures ? "(?<splat>.*)" : ".*";
    let text = piece.replace(/[-/\\^$+?.()|[\]{}]/g, "\\$&");
    if (captures) {
      text = text.replace(/:([A-Za-z]\w*)/g, (_, name) => `(?<${name}>[^/]+)`);
    }
    out += text;
  }
  try {
    return new RegExp(`^${out}$`);
  } catch {
    return null;  // a rule that does not compile matches nothing, as on Cloudflare
  }
}

function compile(doc, route) {
  const config = route.config || {};
  const first = config.worker_first || [];
  const rules = (list) => list.map((r) => ({ ...r, re: globRegExp(r.from ?? r.path, true),
                                             hosted: (r.from ?? r.path).startsWith("https://") }))
    .filter((r) => r.re);
  return {
    files: doc.files || {},
    html: config.html_handling || "auto-trailing-slash",
    notFound: config.not_found_handling || "none",
    workerFirst: config.run_worker_first === true,
    // `!/x/*`: assets first; `/x/*`: the worker first (Cloudflare's static routing).
    assetsFirst: first.filter((p) => p.startsWith("!")).map((p) => globRegExp(p.slice(1)))
      .filter(Boolean),
    userFirst: first.filter((p) => !p.startsWith("!")).map((p) => globRegExp(p))
      .filter(Boolean),
    routed: first.length > 0,
    hasWorker: route.worker !== false,
    navigation: route.navigation === true,
    staticRedirects: (doc.redirects && doc.redirects.static) || {},
    redirects: rules((doc.redirects && doc.redirects.dynamic) || []),
    headers: rules(doc.headers || []),
  };
}

async function manifestFor(env, ns, worker, version) {
  const key = `${ns}:${worker}:${version}`;
  let pending = manifests.get(key);
  if (!pending) {
    pending = stateGet(env, `/assets/manifest?ns=${encodeURIComponent(ns)}` +
      `&worker=${encodeURIComponent(worker)}&version=${encodeURIComponent(version)}`)
      .then((doc) => compile(doc, doc));
    manifests.set(key, pending);
    pending.catch(() => manifests.delete(key));
    if (manifests.size > MANIFESTS_KEPT) manifests.delete(manifests.keys().next().value);
  }
  return pending;
}

// --- resolution (html_handling, not_found_handling) ------------------------------

function notFoundIntent(m, path) {
  if (m.notFound === "single-page-application") {
    const index = m.files["/index.html"];
    return index ? { file: index, status: 200 } : null;
  }
  if (m.notFound === "404-page") {
    for (let dir = path; dir; ) {
      dir = dir.slice(0, dir.lastIndexOf("/"));
      const page = m.files[`${dir}/404.html`];
      if (page) return { file: page, status: 404 };
    }
  }
  return null;
}

// The steps each html_handling mode tries for a path, first hit wins:
// ["serve", path] serves that file; ["redirect", file, to] redirects to `to` when
// `to` itself is no file but resolves to `file` (so the redirect cannot loop).
function steps(mode, p) {
  const cut = (n) => p.slice(0, p.length - n);
  if (mode === "none") return [["serve", p]];
  if (mode === "auto-trailing-slash") {
    if (p.endsWith("/index")) return [["serve", p], ["redirect", `${p}.html`, cut(5)],
      ["redirect", `${cut(6)}.html`, cut(6)], ...tail()];
    if (p.endsWith("/index.html")) return [["redirect", p, cut(10)],
      ["redirect", `${cut(11)}.html`, cut(11)], ...tail()];
    if (p.endsWith("/")) return [["serve", `${p}index.html`], ["redirect", `${cut(1)}.html`,
      cut(1)], ...tail()];
    if (p.endsWith(".html")) return [["redirect", p, cut(5)],
      ["redirect", `${cut(5)}/index.html`, `${cut(5)}/`], ...tail()];
    return tail();
  }
  if (mode === "force-trailing-slash") {
    const end = [["serve", p], ["redirect", `${p}.html`, `${p}/`],
                 ["redirect", `${p}/index.html`, `${p}/`]];
    if (p.endsWith("/index")) return [["serve", p], ["redirect", `${p}.html`, cut(5)],
      ["redirect", `${cut(6)}.html`, cut(5)], ...end];
    if (p.endsWith("/index.html")) return [["redirect", p, cut(10)],
      ["redirect", `${cut(11)}.html`, cut(10)], ...end];
    if (p.endsWith("/")) return [["serve", `${p}index.html`], ["serve", `${cut(1)}.html`],
      ...end];
    if (p.endsWith(".html")) return [["redirect", p, `${cut(5)}/`], ["serve", p],
      ["redirect", `${cut(5)}/index.html`, `${cut(5)}/`], ...end];
    return end;
  }
  // drop-trailing-slash
  const end = [["serve", p], ["serve", `${p}.html`], ["serve", `${p}/index.html`]];
  if (p.endsWith("/index")) {
    return p === "/index" ? [["serve", p], ["redirect", "/index.html", "/"], ...end]
      : [["serve", p], ["redirect", `${cut(6)}.html`, cut(6)],
         ["redirect", `${p}.html`, cut(6)], ...end];
  }
  if (p.endsWith("/index.html")) {
    return p === "/index.html" ? [["redirect", p, "/"], ...end]
      : [["redirect", p, cut(11)], ["serve", p], ["redirect", `${cut(11)}.html`, cut(11)],
         ...end];
  }
  if (p.endsWith("/")) {
    return p === "/" ? [["serve", "/index.html"], ...end]
      : [["redirect", `${cut(1)}.html`, cut(1)], ["redirect", `${cut(1)}/index.html`, cut(1)],
         ...end];
  }
  if (p.endsWith(".html")) return [["redirect", p, cut(5)],
    ["redirect", `${cut(5)}/index.html`, cut(5)], ...end];
  return end;

  function tail() {
    return [["serve", p], ["serve", `${p}.html`], ["redirect", `${p}/index.html`, `${p}/`]];
  }
}

// {file, status} to serve, {redirect} to send, or null (no asset answers this path).
function resolve(m, path, noRedirects = false) {
  for (const [kind, a, b] of steps(m.html, path)) {
    if (kind === "serve") {
      if (m.files[a]) return { file: m.files[a], status: 200 };
    } else if (!noRedirects && !m.files[b] && m.files[a]) {
      const there = resolve(m, b, true);
      if (there && there.file && there.file[0] === m.files[a][0]) return { redirect: b };
    }
  }
  return notFoundIntent(m, path);
}

function decodePath(path) {
  return path.split("/").map((s) => {
    try { return decodeURIComponent(s); } catch { return s; }
  }).join("/").replace(/\/+/g, "/");
}

function encodePath(path) {
  return path.split("/").map((s) => {
    try { return encodeURIComponent(s); } catch { return s; }
  }).join("/");
}

// --- rules (_redirects, _headers) --------------------------------------------------

function fill(text, groups) {
  let out = text;
  for (const [name, value] of Object.entries(groups || {})) {
    if (value !== undefined) out = out.replaceAll(`:${name}`, value);
  }
  return out;
}

function matchRules(list, url) {
  const out = [];
  for (const rule of list) {
    const found = rule.re.exec(rule.hosted ? `https://${url.hostname}${url.pathname}`
                                            : url.pathname);
    if (found) out.push({ rule, groups: found.groups || {} });
  }
  return out;
}

// A `_redirects` hit: a Response, or {path} for a 200 rewrite; null without one.
function redirectRule(m, url) {
  const hosted = m.staticRedirects[`https://${url.host}${url.pathname}`];
  const plain = m.staticRedirects[url.pathname];
  let hit = hosted && plain ? (hosted.line < plain.line ? hosted : plain) : hosted || plain;
  if (!hit) {
    const first = matchRules(m.redirects, url)[0];
    if (!first) return null;
    let to = fill(first.rule.to, first.groups).trim();
    if (!/^\w+:\/\//.test(to)) to = to.replace(/\/+/g, "/");
    hit = { to, status: first.rule.status };
  }
  if (hit.status === 200) return { path: new URL(hit.to, url).pathname };
  const dest = new URL(hit.to, url);
  const query = dest.search || url.search;
  const location = dest.origin === url.origin
    ? `${dest.pathname}${query}${dest.hash}`
    : `${dest.origin}${dest.pathname}${query}${dest.hash}`;
  return { status: [301, 303, 307, 308].includes(hit.status) ? hit.status : 302, location };
}

function withRuleHeaders(m, url, response) {
  if (!m.headers.length) return response;
  const headers = new Headers(response.headers);
  const set = new Set();
  for (const { rule, groups } of matchRules(m.headers, url)) {
    for (const name of rule.unset || []) headers.delete(name);
    for (const [name, value] of Object.entries(rule.set || {})) {
      const v = fill(value, groups);
      if (set.has(name)) headers.append(name, v); else { headers.set(name, v); set.add(name); }
    }
  }
  return new Response(response.body, { status: response.status,
                                       statusText: response.statusText, headers });
}

// --- bytes --------------------------------------------------------------------------

async function body(env, ns, digest, size, start, end) {
  const key = `${ns}\0${digest}`;
  const kept = small.get(key);
  if (kept) return start === undefined ? kept : kept.slice(start, end + 1);
  const range = start === undefined ? "" : `&start=${start}&end=${end}`;
  let res;
  try {
    res = await env.STATE.fetch(`http://state/assets/blob?ns=${encodeURIComponent(ns)}` +
      `&digest=${digest}${range}`, { headers: internalHeaders(env) });
  } catch {
    throw new PlatformError(503, "state_unavailable", "the state service is unreachable");
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new PlatformError(res.status === 404 ? 404 : 502, "asset_unavailable",
      `an asset of this version is not available (${res.status})`);
  }
  if (start === undefined && size <= SMALL_FILE) {
    const bytes = new Uint8Array(await res.arrayBuffer());
    small.set(key, bytes);
    smallBytes += bytes.byteLength;
    while (smallBytes > SMALL_FILES_BYTES) {
      const [oldest, value] = small.entries().next().value;
      small.delete(oldest);
      smallBytes -= value.byteLength;
    }
    return bytes;
  }
  return res.body;  // streamed through, never held here
}

// One `bytes=` range of a file of `size` bytes: [start, end], "unsatisfiable", or null
// (no Range, or one this server ignores and answers whole, as RFC 9110 allows).
function byteRange(header, size) {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === "" && m[2] === "")) return null;
  let start, end;
  if (m[1] === "") {
    const n = Number(m[2]);
    if (n === 0) return "unsatisfiable";
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== "" && Number(m[2]) < start) return null;
  }
  if (start >= size || size === 0) return "unsatisfiable";
  return [start, end];
}

async function fileResponse(env, ns, request, intent) {
  const [digest, size, type] = intent.file;
  const etag = `"${digest.slice(0, 32)}"`;
  const headers = new Headers({ ETag: etag });
  if (type) headers.set("Content-Type", type);
  if (!request.headers.has("Authorization") && !request.headers.has("Range")) {
    headers.set("Cache-Control", CACHE_CONTROL);
  }
  // As Cloudflare compares it: the header is exactly the strong or the weak form (no
  // lists, `*` is not a match).
  const inm = request.headers.get("If-None-Match");
  if (inm === etag || inm === `W/${etag}`) {
    return new Response(null, { status: 304, headers });
  }
  const head = request.method === "HEAD";
  const range = intent.status === 200 ? byteRange(request.headers.get("Range"), size) : null;
  if (range === "unsatisfiable") {
    headers.set("Content-Range", `bytes */${size}`);
    return new Response(null, { status: 416, headers });
  }
  headers.set("Accept-Ranges", "bytes");
  if (range) {
    const [start, end] = range;
    headers.set("Content-Range", `bytes ${start}-${end}/${size}`);
    headers.set("Content-Length", String(end - start + 1));
    return new Response(head ? null : await body(env, ns, digest, size, start, end),
                        { status: 206, headers });
  }
  headers.set("Content-Length", String(size));
  return new Response(head ? null : await body(env, ns, digest, size),
                      { status: intent.status, headers });
}

// --- serving ------------------------------------------------------------------------

const redirectTo = (status, location) => new Response(null,
  { status, headers: { Location: location } });

// What the assets answer for `request` (its URL is what the tenant sees): a Response,
// or null when no asset answers (the worker's turn). `base` prefixes the redirects the
// platform makes (the `/<worker>` segment of a namespace host), `strict` applies
// not_found_handling whatever the request (env.ASSETS.fetch, assets-only projects).
async function answer(env, ns, m, request, { base = "", probe = false, strict = true } = {}) {
  const url = new URL(request.url);
  let pathname = url.pathname;
  const rule = redirectRule(m, url);
  if (rule && rule.location) {
    const location = rule.location.startsWith("/") ? base + rule.location : rule.location;
    return probe ? true : withRuleHeaders(m, url, redirectTo(rule.status, location));
  }
  const proxied = !!(rule && rule.path);
  if (proxied) pathname = rule.path;
  const decoded = decodePath(pathname);
  const view = strict ? m : { ...m, notFound: "none" };
  const intent = resolve(view, decoded);
  if (!intent) {
    return probe ? false : withRuleHeaders(m, url, new Response(null, { status: 404 }));
  }
  if (probe) return true;
  if (request.method !== "GET" && request.method !== "HEAD") {
    return withRuleHeaders(m, url, new Response(null, { status: 405 }));
  }
  const encoded = encodePath(intent.redirect ?? decoded);
  if (intent.redirect || (encoded !== pathname && intent.file)) {
    return withRuleHeaders(m, url, redirectTo(307, base + encoded + url.search));
  }
  return withRuleHeaders(m, url, await fileResponse(env, ns, request, intent));
}

function matches(list, path) {
  return list.some((re) => re.test(path));
}

// The gateway's decision for a routed request (gateway.js): the Response of the assets,
// or null to run the worker. Cloudflare's router: negated run_worker_first patterns
// go to the assets, positive ones to the worker, `true` sends all to the worker; else
// the assets answer what they can (not_found_handling only with patterns, or for a
// browser navigation) and the worker the rest.
export async function routeAssets(env, ns, worker, entry, request, tenantPath, base) {
  const m = await manifestFor(env, ns, worker, entry.version);
  const url = new URL(request.url);
  const inner = new Request(url.origin + tenantPath + url.search, request);
  if (!m.hasWorker) return answer(env, ns, m, inner, { base });
  if (matches(m.assetsFirst, tenantPath)) return answer(env, ns, m, inner, { base });
  if (matches(m.userFirst, tenantPath) || m.workerFirst) return null;
  const strict = m.routed || (m.navigation &&
                              request.headers.get("Sec-Fetch-Mode") === "navigate");
  if (!(await answer(env, ns, m, inner, { base, probe: true, strict }))) return null;
  return answer(env, ns, m, inner, { base, strict });
}

// `env.ASSETS` of a worker whose version has assets: `fetch()` answers from that very
// version's manifest (props only the platform sets: services/state/assets.py).
export class WdlAssets extends WorkerEntrypoint {
  async fetch(request) {
    const { namespace, worker, version } = this.ctx.props;
    try {
      const m = await manifestFor(this.env, namespace, worker, version);
      return await answer(this.env, namespace, m, request);
    } catch (err) {
      if (err instanceof PlatformError) {
        throw new Error(`ASSETS.fetch(): ${err.message}`);
      }
      throw err;
    }
  }
}
