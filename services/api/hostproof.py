"""DNS ownership proofs of hosts (docs/hosts.md).

A namespace proves it controls a host by publishing a TXT record
`_wdl-challenge.<host>` holding its challenge: a value derived from the platform
domain, the host and the namespace, so a record published for one namespace (or
one platform) proves nothing for another. The API looks the record up with
dnspython and, when it holds the challenge, appends `host.verified`: the proof is
an event, so routing stays a fold of the log and rebuilds the same.

The proof is as good as the resolver the API asks: in production use a resolver
that validates DNSSEC. `WDL_DNS_RESOLVER` (`ip[:port]`, comma-separated) names one;
by default the system's resolvers (/etc/resolv.conf) answer.
"""

from __future__ import annotations

import hashlib
import ipaddress

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.resolver

RECORD_PREFIX = "_wdl-challenge."
CHALLENGE_PREFIX = "wdl-verify="
LOOKUP_TIMEOUT_S = 5.0


class ProofUnavailable(Exception):
    """The resolver did not answer: nothing can be concluded about the record."""


def record_name(host: str) -> str:
    return RECORD_PREFIX + host


def challenge(domain: str, host: str, namespace: str) -> str:
    digest = hashlib.sha256(f"wdl host ownership\n{domain}\n{host}\n{namespace}".encode())
    return CHALLENGE_PREFIX + digest.hexdigest()[:32]


def nameservers(spec: str) -> list[dns.nameserver.Nameserver]:
    """`ip[:port]` or `[ipv6]:port`, comma-separated (port 53 by default)."""
    servers: list[dns.nameserver.Nameserver] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        address, port = item, 53
        if item.startswith("["):
            address, _, rest = item[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else 53
        elif item.count(":") == 1:
            address, _, number = item.partition(":")
            port = int(number)
        ipaddress.ip_address(address)  # a name here would need a resolver to find it
        servers.append(dns.nameserver.Do53Nameserver(address, port))
    if not servers:
        raise ValueError(f"no DNS resolver in {spec!r}")
    return servers


def _resolver(spec: str | None) -> dns.asyncresolver.Resolver:
    if spec is None:
        return dns.asyncresolver.Resolver()
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = nameservers(spec)
    return resolver


async def txt_values(name: str, resolver: str | None = None,
                     timeout: float = LOOKUP_TIMEOUT_S) -> list[str]:
    """The TXT values at `name` (each record's strings joined), [] when there are none."""
    try:
        qname = dns.name.from_text(name)
    except dns.name.NameTooLong:  # `_wdl-challenge.` on a name near 253 characters
        return []
    try:
        answer = await _resolver(resolver).resolve(qname, "TXT", lifetime=timeout,
                                                   search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as exc:  # no answer in time, SERVFAIL, refused
        raise ProofUnavailable(f"{name}: {exc}") from None
    return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]
