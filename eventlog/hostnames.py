"""Host names: how a host pattern splits, and which names belong to no tenant.

A host pattern is `host` or `host/path`. Ownership is per host: one namespace holds a
host and every path under it, so a pattern's aggregate (and its partition key) is
its host, and the fold sees every claim of one host on one partition.

Some names are the platform's or nobody's, and no claim may take them (the API
refuses them, and routing never consults a claim for them, so a claim written
before these rules cannot route either):

* IP literals in any spelling: IPv6 (with or without brackets, IPv4-mapped) has a
  ':'; for IPv4 we follow the WHATWG URL parser, which reads a host whose last label
  is a number (`127.0.0.1`, `127.1`, `2130706433`, `0x7f.1`, `0177.0.0.1`) as an
  address. A top-level domain is never numeric, so no DNS name is lost.
* single-label names (`localhost`, `gateway`, `redis`): resolved through local
  search domains and /etc/hosts, they name machines of the platform's network.
* local and special-use suffixes, below. `.test` and `.example` (RFC 6761) stay
  claimable: they are reserved for testing and documentation, resolve nowhere on
  the Internet and so name nothing of the platform; tests and docs use them, and a
  DNS ownership proof can never succeed for them (docs/hosts.md), so in production
  they never route.
* the platform domain and all its subdomains: configuration, checked by the API
  (services/api/routes/hosts.py) and by routing.

Mirrored for request hosts by `workerd/gateway/routing.js` (`reservedReason`).
"""

from __future__ import annotations

import re

import idna

from eventlog.errors import InvalidEvent

LOCAL_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("localhost", "the loopback name (RFC 6761)"),
    ("localdomain", "a local name (/etc/hosts)"),
    ("local", "a multicast DNS name (RFC 6762)"),
    ("internal", "a private-use name (ICANN, cloud metadata and service names)"),
    ("intranet", "a private-use name (RFC 6762, appendix G)"),
    ("private", "a private-use name (RFC 6762, appendix G)"),
    ("corp", "a private-use name (RFC 6762, appendix G)"),
    ("home", "a private-use name (RFC 6762, appendix G)"),
    ("lan", "a private-use name (RFC 6762, appendix G)"),
    ("arpa", "an infrastructure name (reverse-DNS addresses, home.arpa: RFC 8375)"),
    ("onion", "a Tor name (RFC 7686)"),
    ("invalid", "a name that never resolves (RFC 6761)"),
    ("alt", "a non-DNS name (RFC 9476)"),
)

# The WHATWG URL parser's "ends in a number": the last label is decimal digits or a
# 0x-prefixed hexadecimal number (octal is digits already).
_NUMBER_RE = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")


def split_pattern(pattern: str) -> tuple[str, str]:
    """`host/path` -> ("host", "/path"); `host` -> ("host", "")."""
    host, slash, path = pattern.partition("/")
    return host, slash + path


def host_of(pattern: str) -> str:
    return pattern.partition("/")[0]


def reserved_reason(host: str) -> str | None:
    """Why `host` (lowercase, without port or trailing dot) belongs to no tenant, or None."""
    if not host:
        return "an empty name"
    if host.startswith("[") or ":" in host:
        return "an IPv6 address"
    labels = host.split(".")
    if _NUMBER_RE.fullmatch(labels[-1]) is not None:
        return "an IPv4 address"
    for suffix, why in LOCAL_SUFFIXES:
        if host == suffix or host.endswith("." + suffix):
            return why
    if len(labels) == 1:
        return "a single-label name (it resolves through local search domains)"
    return None


def under_domain(host: str, domain: str) -> bool:
    """Whether `host` is the platform domain or one of its subdomains."""
    return bool(domain) and (host == domain or host.endswith("." + domain))


def normalize_pattern(value: str) -> str:
    """A pattern as a user typed it -> its canonical form: the host lowercased, one
    trailing dot dropped, a non-ASCII host in its IDNA (UTS #46) ASCII form; the path
    unchanged (paths are case-sensitive). A port is refused: a claim covers every port.
    Whatever else is wrong is left to `validation.host_pattern`, which names it."""
    host, path = split_pattern(value)
    if host.count(":") == 1 and host.rpartition(":")[2].isdigit():
        raise InvalidEvent("pattern", f"{host!r} has a port: a host pattern names no port "
                                      "(a claim covers every port)")
    if host.endswith(".") and not host.endswith(".."):
        host = host[:-1]
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise InvalidEvent("pattern", f"{host!r} is not an internationalized host "
                                          f"name: {exc}") from None
    return host.lower() + path
