// Pure request routing for the gateway; mirrors services/state/routing.py
// (tests/unit/test_gateway_routing.py runs both on one table of cases).

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

// claims: Map pattern -> {pattern, namespace, worker, match}
export function matchClaim(claims, host, path) {
  const full = host + path;
  const exact = claims.get(full) || claims.get(host);
  if (exact && exact.match === "exact") return exact;
  let best = null;
  for (const claim of claims.values()) {
    if (claim.match !== "prefix" || !full.startsWith(claim.pattern)) continue;
    if (!claim.pattern.includes("/") && full !== claim.pattern &&
        !full.slice(claim.pattern.length).startsWith("/")) continue;
    if (best === null || claim.pattern.length > best.pattern.length) best = claim;
  }
  return best;
}

// -> {namespace, worker, path} or {code, message}
export function resolveTarget(host, path, domain, claims) {
  host = normalizeHost(host);
  path = path || "/";
  const suffix = "." + domain;
  if (host.endsWith(suffix)) {
    const ns = host.slice(0, -suffix.length);
    if (!ns || ns.includes(".")) {
      return { code: "unknown_host", message: `${host} is not <namespace>${suffix}` };
    }
    const [worker, rest] = firstSegment(path);
    if (!worker) return { code: "no_worker", message: `name a worker: https://${host}/<worker>/` };
    return { namespace: ns, worker, path: rest };
  }
  const claim = matchClaim(claims, host, path);
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
