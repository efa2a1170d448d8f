// The URL half of a namespace's egress decision (the address half is the
// gateway's `NET` network service, which refuses non-public addresses after
// DNS and before connecting). Pure: tests/unit/test_egress_policy.py runs it.
//
// policy: {mode: "deny" | "public" | "allow", allow?: [{host, ports?}]}
//   host: "api.example.com" (exact) or "*.example.com" (any subdomain, not the apex)

const DEFAULT_PORTS = { "http:": 80, "https:": 443 };
const BLOCKED_NAMES = new Set(["localhost", "metadata", "metadata.google.internal",
  "instance-data", "metadata.azure.internal"]);

function ipv4(text) {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const out = [];
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return null;
    out.push(Number(p));
  }
  return out;
}

// Why an IPv4 address is never a tenant destination, or "" if it may be.
function specialV4([a, b], loopbackOk) {
  if (a === 127) return loopbackOk ? "" : "loopback address";
  if (a === 0) return "unspecified address";
  if (a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168)) {
    return "private address";
  }
  if (a === 100 && b >= 64 && b <= 127) return "shared (CGNAT) address";
  if (a === 169 && b === 254) return "link-local / metadata address";
  if (a >= 224) return "multicast or reserved address";
  if (a === 192 && b === 0) return "reserved address";
  if (a === 198 && (b === 18 || b === 19)) return "benchmarking address";
  return "";
}

function ipv6Groups(text) {
  // Expand an IPv6 literal (no brackets) into 8 16-bit groups, or null.
  let head = text;
  let v4tail = null;
  const lastColon = text.lastIndexOf(":");
  if (text.includes(".")) {
    v4tail = ipv4(text.slice(lastColon + 1));
    if (!v4tail) return null;
    head = text.slice(0, lastColon + 1) + "0:0";
  }
  const halves = head.split("::");
  if (halves.length > 2) return null;
  const parse = (s) => (s === "" ? [] : s.split(":").map((g) => (/^[0-9a-f]{1,4}$/i.test(g)
    ? parseInt(g, 16) : NaN)));
  const left = parse(halves[0]);
  const right = halves.length === 2 ? parse(halves[1]) : [];
  const fill = 8 - left.length - right.length;
  if (left.concat(right).some(Number.isNaN) || fill < 0 || (halves.length === 1 && fill)) {
    return null;
  }
  const groups = left.concat(new Array(fill).fill(0), right);
  if (v4tail) {
    groups[6] = (v4tail[0] << 8) | v4tail[1];
    groups[7] = (v4tail[2] << 8) | v4tail[3];
  }
  return groups;
}

function dotted(hi, lo) {
  return [hi >> 8, hi & 255, lo >> 8, lo & 255];
}

// Every IPv4 address an IPv6 address carries, with the form that carries it. `direct`
// forms reach the IPv4 host itself (a dual-stack socket connects to it); the others
// tunnel through a relay or translator, so an embedded special address is never allowed.
function embeddedV4(g) {
  const out = [];
  const zero = (from, to) => g.slice(from, to).every((x) => x === 0);
  if (zero(0, 5) && g[5] === 0xffff) out.push([dotted(g[6], g[7]), "IPv4-mapped", true]);
  if (zero(0, 5) && g[5] === 0) out.push([dotted(g[6], g[7]), "IPv4-compatible", true]);
  if (zero(0, 4) && g[4] === 0xffff && g[5] === 0) {
    out.push([dotted(g[6], g[7]), "IPv4-translated", true]);
  }
  if (g[0] === 0x64 && g[1] === 0xff9b) out.push([dotted(g[6], g[7]), "NAT64", false]);
  if (g[0] === 0x2002) out.push([dotted(g[1], g[2]), "6to4", false]);
  if (g[0] === 0x2001 && g[1] === 0) {
    out.push([dotted(g[2], g[3]), "Teredo server", false]);
    out.push([dotted(~g[6] & 0xffff, ~g[7] & 0xffff), "Teredo client", false]);
  }
  if ((g[4] & 0xfdff) === 0 && g[5] === 0x5efe) out.push([dotted(g[6], g[7]), "ISATAP", false]);
  return out;
}

function specialV6(g, loopbackOk) {
  if (g.every((x) => x === 0)) return "unspecified address";
  if (g.slice(0, 7).every((x) => x === 0) && g[7] === 1) {
    return loopbackOk ? "" : "loopback address";
  }
  for (const [v4, form, direct] of embeddedV4(g)) {
    // Judge the embedded IPv4 address as if it had been written as one.
    const reason = specialV4(v4, direct && loopbackOk);
    const article = /^[AEIOU]/.test(form) ? "an" : "a";
    if (reason) return `${reason} (${v4.join(".")} embedded in ${article} ${form} address)`;
  }
  if ((g[0] & 0xfe00) === 0xfc00) return "unique-local address";
  if ((g[0] & 0xffc0) === 0xfe80) return "link-local address";
  if ((g[0] & 0xff00) === 0xff00) return "multicast address";
  if (g[0] === 0x64 && g[1] === 0xff9b) return "NAT64 address";
  if (g[0] === 0x2001 && g[1] === 0xdb8) return "documentation address";
  return "";
}

function hostMatches(pattern, host) {
  const p = String(pattern).toLowerCase();
  if (p.startsWith("*.")) return host.endsWith(p.slice(1)) && host.length > p.length - 1;
  return host === p;
}

// "" when the policy lets the tenant fetch `url`, else the reason it does not.
export function egressRefusal(policy, url, loopbackOk = false) {
  if (!(url.protocol in DEFAULT_PORTS)) return `scheme ${url.protocol} is not allowed`;
  const port = url.port ? Number(url.port) : DEFAULT_PORTS[url.protocol];
  return addressRefusal(policy, url.hostname, port, loopbackOk);
}

// "" when the policy lets the tenant reach `host` (a WHATWG-parsed hostname: IPv4 in
// dotted decimal, IPv6 in brackets) on `port`, else the reason it does not. Shared by
// fetch() (above) and connect() (sockets.js), so both are judged alike.
export function addressRefusal(policy, hostname, port, loopbackOk = false) {
  const mode = policy && policy.mode || "public";
  if (mode === "deny") return "the policy denies all outbound requests";
  const host = hostname.toLowerCase().replace(/\.$/, "");
  let special = "";
  if (host.startsWith("[")) {
    const groups = ipv6Groups(host.slice(1, -1));
    special = groups ? specialV6(groups, loopbackOk) : "malformed address";
  } else if (ipv4(host)) {
    special = specialV4(ipv4(host), loopbackOk);
  } else if (BLOCKED_NAMES.has(host) || host.endsWith(".localhost") ||
             host.endsWith(".internal") || host.endsWith(".local")) {
    special = loopbackOk && (host === "localhost" || host.endsWith(".localhost")) ? ""
      : `${host} is a local name`;
  }
  if (special) return special;
  if (mode === "public") return "";
  if (mode !== "allow") return `unknown policy mode ${mode}`;
  for (const rule of policy.allow || []) {
    if (!hostMatches(rule.host, host)) continue;
    if (!rule.ports || rule.ports.length === 0 || rule.ports.includes(port)) return "";
    return `port ${port} of ${host} is not in the allow list`;
  }
  return `${host} is not in the allow list`;
}
