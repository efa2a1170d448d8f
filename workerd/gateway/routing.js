// Pure request routing for the gateway; mirrors services/state/routing.py
// (tests/unit/test_gateway_routing.py runs both on one table of cases), and
// eventlog/hostnames.py for the names that belong to no tenant.

// [suffix, why]: local and special-use names (eventlog/hostnames.py, LOCAL_SUFFIXES).
const LOCAL_SUFFIXES = [
  ["localhost", "the loopback name (RFC 6761)"],
  ["localdomain", "a local name (/etc/hosts)"],
  ["local", "a multicast DNS name (RFC 6762)"],
  ["internal", "a private-use name (ICANN, cloud metadata and service names)"],
  ["intranet", "a private-use name (RFC 6762, appendix G)"],
  ["private", "a private-use name (RFC 6762, appendix G)"],
  ["corp", "a private-use name (RFC 6762, appendix G)"],
  ["home", "a private-use name (RFC 6762, appendix G)"],
  ["lan", "a private-use name (RFC 6762, appendix G)"],
  ["arpa", "an infrastructure name (reverse-DNS addresses, home.arpa: RFC 8375)"],
  ["onion", "a Tor name (RFC 7686)"],
  ["invalid", "a name that never resolves (RFC 6761)"],
  ["alt", "a non-DNS name (RFC 9476)"],
];
// The WHATWG URL parser's "ends in a number": such a host is an IPv4 address.
const NUMBER_RE = /^(?:[0-9]+|0[xX][0-9a-fA-F]*)$/;

// Why `host` (normalized) belongs to no tenant, or null.
export function reservedReason(host) {
  if (!host) return "an empty name";
  if (host.startsWith("[") || host.includes(":")) return "an IPv6 address";
  const labels = host.split(".");
  if (NUMBER_RE.test(labels[labels.length - 1])) return "an IPv4 address";
  for (const [suffix, why] of LOCAL_SUFFIXES) {
    if (host === suffix || host.endsWith("." + suffix)) return why;
  }
  if (labels.length === 1) return "a single-label name (it resolves through local search domains)";
  return null;
}

function splitPattern(pattern) {
  const slash = pattern.indexOf("/");
  return slash < 0 ? [pattern, ""] : [pattern.slice(0, slash), pattern.slice(slash)];
}

// claims: [{pattern, namespace, worker, match}] -> Map host -> {owner, bare, exact, prefixes}:
// only the owner's claims, most specific first (services/state/routing.py, index_claims).
export function indexClaims(claims) {
  const byHost = new Map();
  for (const claim of claims) {
    const host = splitPattern(claim.pattern)[0];
    if (!byHost.has(host)) byHost.set(host, []);
    byHost.get(host).push(claim);
  }
  const table = new Map();
  for (const [host, group] of byHost) {
    const namespaces = new Set(group.map((c) => c.namespace));
    const bare = group.find((c) => c.pattern === host);
    const owner = namespaces.size === 1 ? group[0].namespace : (bare ? bare.namespace : null);
    const entry = { owner, bare: null, exact: new Map(), prefixes: [] };
    const sorted = [...group].sort((a, b) => (a.pattern < b.pattern ? -1 : a.pattern > b.pattern ? 1 : 0));
    for (const claim of sorted) {
      if (claim.namespace !== owner) continue;
      const path = splitPattern(claim.pattern)[1];
      if (!path) entry.bare = claim;
      else if (claim.match === "exact") entry.exact.set(path, claim);
      else entry.prefixes.push(claim);
    }
    entry.prefixes.sort((a, b) => b.pattern.length - a.pattern.length);
    table.set(host, entry);
  }
  return table;
}

export function normalizeHost(host) {
  let h = String(host || "").trim().toLowerCase();
  if (h.startsWith("[")) return h.split("]", 1)[0] + "]";
  if (h.split(":").length === 2) h = h.slice(0, h.lastIndexOf(":"));
  return h.replace(/\.+$/, "");
}

function firstSegment(path) {
  const rest = path.startsWith("/") ? path.slice(1) : path;
  const slash = rest.indexOf("/");
  if (slash < 0) return [rest, "/"];
  return [rest.slice(0, slash), "/" + rest.slice(slash + 1)];
}

export function matchClaim(entry, path) {
  const exact = entry.exact.get(path);
  if (exact) return exact;
  for (const claim of entry.prefixes) {
    if (path.startsWith(splitPattern(claim.pattern)[1])) return claim;
  }
  return entry.bare;
}

// table: indexClaims(...) -> {namespace, worker, path} or {code, message}
export function resolveTarget(host, path, domain, table) {
  host = normalizeHost(host);
  path = path || "/";
  const suffix = "." + domain;
  if (host === domain) {
    return { code: "unknown_host",
             message: `${host} is the platform domain: name a namespace (https://<namespace>${suffix}/<worker>/)` };
  }
  if (host.endsWith(suffix)) {
    const ns = host.slice(0, -suffix.length);
    if (!ns || ns.includes(".")) {
      return { code: "unknown_host", message: `${host} is not <namespace>${suffix}` };
    }
    const [worker, rest] = firstSegment(path);
    if (!worker) return { code: "no_worker", message: `name a worker: https://${host}/<worker>/` };
    return { namespace: ns, worker, path: rest };
  }
  const reason = reservedReason(host);
  if (reason !== null) {
    return { code: "unknown_host", message: `${host} is ${reason}: no worker is routed at it` };
  }
  const entry = table.get(host);
  const claim = entry ? matchClaim(entry, path) : null;
  if (claim === null || claim === undefined) {
    return { code: "unknown_host", message: `no worker is routed at ${host}${path}` };
  }
  if (claim.worker !== null && claim.worker !== undefined) {
    return { namespace: claim.namespace, worker: claim.worker, path };
  }
  const [worker, rest] = firstSegment(path);
  if (!worker) return { code: "no_worker", message: `name a worker: https://${host}/<worker>/` };
  return { namespace: claim.namespace, worker, path: rest };
}
