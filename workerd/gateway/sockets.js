// A tenant's connect() (cloudflare:sockets), under its namespace's egress policy.
//
// workerd sends a loaded worker's connect() to its globalOutbound as an HTTP CONNECT;
// the gateway's WdlEgress and the objects process's WdlObjectsOutbound hand it here.
// What the pinned workerd gives us (docs/egress.md, measured in the issue 26 spike):
// - the tenant's authority, verbatim, as `(await socket.opened).localAddress`;
// - nothing of the tenant's request (no headers, no cf), so no request name: the
//   subrequest budget cannot be charged; a per-namespace bound of open connections in
//   this process stands in for it (SOCKET_LIMIT);
// - the CONNECT is accepted before this handler runs, so a refusal cannot carry a
//   message: the tenant sees "Network connection lost."; the refusal is logged and
//   counted (wdl_egress_socket_refusals) naming the policy and the address.
// The address is judged twice: here in JS (every spelling normalised by the WHATWG URL
// host parser, then the same rules as fetch(): egress.js) and by the `NET` network
// service, which checks the *resolved* address in the same step as it connects (public
// only; loopback only under the operators' test setting), so DNS cannot rebind between.

import { addressRefusal } from "./egress.js";
import { internalHeaders } from "./internal.js";
import { hyperdriveConfigOf, poolerAddress } from "./pooler.js";

export const DEFAULT_SOCKET_LIMIT = 64;
const open = new Map();  // namespace -> connections open in this process

// {host, port} of a tenant's authority ("host:port", IPv6 in brackets), the host as the
// WHATWG URL parser of a special scheme writes it: `0x7f.1`, `2130706433`, `017700000001`
// and `127.1` all become `127.0.0.1`, `[::ffff:127.0.0.1]` becomes `[::ffff:7f00:1]`,
// names are lower-cased. (A `tcp://` URL would keep the IPv4 spellings opaque.) Or
// {error} for an address that is not one.
export function parseAuthority(authority) {
  const m = /^(.+):(\d{1,5})$/.exec(String(authority));
  if (!m) return { error: "the address has no port" };
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return { error: `port ${m[2]} is out of range` };
  let host = m[1];
  // Only a hostname or an address: no userinfo, path, query, zone id or escapes.
  if (/[\s/?#@\\%]/.test(host)) return { error: "malformed address" };
  if (host.includes(":") && !host.startsWith("[")) host = `[${host}]`;
  let hostname;
  try {
    hostname = new URL(`http://${host}/`).hostname;
  } catch {
    return { error: "malformed address" };
  }
  hostname = hostname.toLowerCase().replace(/\.$/, "");
  if (!hostname) return { error: "malformed address" };
  return { host: hostname, port };
}

// "" when the policy lets the tenant connect to `authority`, else the reason; and the
// normalised address that was judged (the one to dial).
export function socketRefusal(policy, authority, loopbackOk = false) {
  const target = parseAuthority(authority);
  if (target.error) return { reason: target.error, target: null };
  return { reason: addressRefusal(policy, target.host, target.port, loopbackOk), target };
}

// A bounded label for a refusal's reason (the metric's `reason`).
export function reasonClass(reason) {
  if (/denies all/.test(reason)) return "deny";
  if (/not in the allow list/.test(reason)) {
    return /^port /.test(reason) ? "port" : "not_allowed";
  }
  if (/connections of namespace/.test(reason)) return "limit";
  if (/subrequest/i.test(reason)) return "subrequests";
  if (/outbound Worker/.test(reason)) return "outbound_worker";
  if (/malformed|no port|out of range/.test(reason)) return "malformed";
  if (/Hyperdrive/.test(reason)) return "hyperdrive";
  if (/address|local name/.test(reason)) return "special_address";
  return "other";
}

function socketLimit(env) {
  const n = Number(env.SOCKET_LIMIT);
  return Number.isInteger(n) && n > 0 ? n : DEFAULT_SOCKET_LIMIT;
}

// A PostgreSQL ErrorResponse (FATAL, SQLSTATE `code`): what a Hyperdrive refusal says, so
// the tenant's driver fails at once with its own error. A bare close was not enough:
// postgres.js went on waiting for its connect_timeout (30 s).
export function postgresError(code, message) {
  const enc = new TextEncoder();
  const parts = [];
  for (const [field, value] of [["S", "FATAL"], ["V", "FATAL"], ["C", code], ["M", message]]) {
    parts.push(enc.encode(field + value), new Uint8Array([0]));
  }
  parts.push(new Uint8Array([0]));
  const length = 4 + parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(1 + length);
  out[0] = 0x45;  // 'E'
  new DataView(out.buffer).setUint32(1, length);
  let at = 5;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// SQLSTATE of a Hyperdrive refusal: too_many_connections for the namespace's bound,
// sqlserver_rejected_establishment_of_sqlconnection otherwise.
function refusalCode(reason) {
  return reasonClass(reason) === "limit" ? "53300" : "08004";
}

// The tenant's startup message (or SSLRequest) first, so the error is what it reads
// after its write rather than a reset under it; then the ErrorResponse.
async function answerPostgres(socket, reason) {
  const reader = socket.readable.getReader();
  await Promise.race([reader.read(), new Promise((r) => setTimeout(r, 5000))]);
  reader.releaseLock();
  const writer = socket.writable.getWriter();
  await writer.write(postgresError(refusalCode(reason),
                                   `connect() refused by the platform: ${reason}`));
  writer.releaseLock();
}

// Refuse: log and count (naming the policy and the address), then close the tenant's
// socket - its next read fails with "Network connection lost.". A Hyperdrive host
// (`postgres`) is first answered with a PostgreSQL error naming the reason.
export async function refuseSocket(env, ctx, socket, namespace, policy, authority, reason,
                                   postgres = isHyperdriveHost(authority)) {
  const mode = policy && policy.mode || "public";
  console.error(`wdl egress: connect() of namespace ${namespace} to ${authority} refused ` +
    `by the egress policy (${mode}): ${reason}`);
  if (env.DATA) {
    ctx.waitUntil(env.DATA.fetch("http://data/egress/refused", {
      method: "POST",
      headers: internalHeaders(env, { "content-type": "application/json" }),
      body: JSON.stringify({ namespace, kind: "connect", policy: mode,
                             reason: reasonClass(reason) }),
    }).then((r) => r.body && r.body.cancel(), () => {}));
  }
  if (postgres) {
    try {
      await answerPostgres(socket, reason);
    } catch {
      // the tenant went away first
    }
  }
  try {
    socket.close();
  } catch {
    // already closed by the tenant
  }
}

// Whether `authority` names a Hyperdrive host (any `.hyperdrive.wdl` name): its refusals
// answer in PostgreSQL's protocol.
export function isHyperdriveHost(authority) {
  if (hyperdriveConfigOf(authority) !== null) return true;
  const parsed = parseAuthority(authority);
  return !parsed.error && /(^|\.)hyperdrive\.wdl$/.test(parsed.host);
}

// Where a tenant's connect() goes: {dial, through} (the address and the network service
// that dials it) or {reason} for a refusal; `postgres` when the tenant named a Hyperdrive
// host (its refusals answer in PostgreSQL's protocol). A Hyperdrive host of a config the version
// binds (`hyperdrive`: its ids, from the route) goes to the platform's pooler, whatever
// the egress policy - the binding is the operator's grant, as on Cloudflare, and the
// pooler admits the config's own credentials only. Any other `.hyperdrive.wdl` name
// (another namespace's config, or no pooler here) is refused; the rest is judged by the
// policy and dialled through NET.
export function socketRoute(env, policy, authority, hyperdrive) {
  const pooler = poolerAddress(authority, hyperdrive || [], env.POOLER_ADDRESS || "");
  if (pooler !== null) return { dial: pooler, through: env.POOLER_NET, postgres: true };
  if (isHyperdriveHost(authority)) {
    return { reason: env.POOLER_ADDRESS
      ? "a Hyperdrive config this worker does not bind"
      : "Hyperdrive is not served here (no pooler configured)", postgres: true };
  }
  const { reason, target } = socketRefusal(policy, authority, env.EGRESS_ALLOW_LOOPBACK === "1");
  if (reason) return { reason };
  // The normalised address: what was judged is what the network resolves and checks.
  return { dial: `${target.host}:${target.port}`, through: env.NET };
}

// The request name a tenant's connect() carries (tenant/sockets.js appends
// `.<name>.wdl-request` to the host) and the address without it: {authority, name}
// (name null when there is none).
const NAMED = /^(.+)\.([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.wdl-request(:\d{1,5})$/i;

export function splitRequestName(authority) {
  const m = NAMED.exec(String(authority));
  return m ? { authority: m[1] + m[3], name: m[2].toLowerCase() } : { authority, name: null };
}

// Serve one tenant connect(): charge its request, judge, bound, dial, pipe both ways.
// `spend(name)`: "" or the reason the request named in the address may not open one
// more connection (the gateway's subrequest budget); null where there is no budget to
// charge (the objects process).
export async function serveConnect(env, ctx, socket, namespace, policy, hyperdrive = [],
                                   spend = null) {
  const opened = (await socket.opened).localAddress;
  const { authority, name } = splitRequestName(opened);
  const over = name !== null && spend !== null ? spend(name) : null;
  // Over the budget (or a name not its own), a Hyperdrive host is answered in
  // PostgreSQL's protocol too: on a bare close postgres.js waits out its connect_timeout.
  if (over) {
    return refuseSocket(env, ctx, socket, namespace, policy, authority, over,
                        isHyperdriveHost(authority));
  }
  const route = socketRoute(env, policy, authority, hyperdrive);
  if (route.reason) {
    return refuseSocket(env, ctx, socket, namespace, policy, authority, route.reason,
                        route.postgres);
  }
  const limit = socketLimit(env);
  const held = open.get(namespace) || 0;
  if (held >= limit) {
    return refuseSocket(env, ctx, socket, namespace, policy, authority,
                        `${limit} connections of namespace ${namespace} are already open ` +
                        "in this process", route.postgres);
  }
  open.set(namespace, held + 1);
  try {
    const up = route.through.connect(route.dial);
    const pipes = Promise.allSettled([socket.readable.pipeTo(up.writable),
                                      up.readable.pipeTo(socket.writable)]);
    // When the tenant's side goes away workerd ends this CONNECT and would drop the
    // rest of this handler (the finally below never ran, the bound leaked): waitUntil
    // keeps it alive until both pipes have settled.
    ctx.waitUntil(pipes);
    const both = await pipes;
    const failed = both.find((r) => r.status === "rejected");
    if (failed) {
      // The network refused the resolved address, the peer is gone, or the tenant
      // closed first: end both sides.
      const text = String(failed.reason && failed.reason.message || failed.reason);
      if (!/closed|aborted|canceled|disconnected/i.test(text)) {
        console.warn(`wdl egress: connect() of namespace ${namespace} to ${authority} ` +
          `ended: ${text}`);
      }
      for (const s of [up, socket]) {
        try { s.close(); } catch { /* already closed */ }
      }
    }
  } finally {
    const now = (open.get(namespace) || 1) - 1;
    if (now > 0) open.set(namespace, now); else open.delete(namespace);
  }
}

// Open connections of a namespace in this process (tests, gateway stats).
export function openSockets(namespace) {
  return open.get(namespace) || 0;
}
