"""Namespace policies (aggregate kind `namespace`): outbound egress and service grants.

They belong to the namespace aggregate, so they share its version (writers
can state the namespace version they saw) and its partition.
"""

from __future__ import annotations

import ipaddress
from typing import ClassVar, Literal

import msgspec

from eventlog import validation as v
from eventlog.errors import InvalidEvent
from eventlog.events.namespaces import NamespaceScoped

EgressMode = Literal["deny", "public", "allow"]
MAX_EGRESS_RULES = 256
MAX_RULE_PORTS = 32


class EgressRule(msgspec.Struct, frozen=True, kw_only=True):
    """`host` exact, or `*.example.com` for any subdomain; no ports means any port."""

    host: str
    ports: tuple[int, ...] = ()


class EgressPolicySet(NamespaceScoped, frozen=True, kw_only=True):
    """Replace the namespace's egress policy (the default, with none set, is `public`)."""

    TYPE: ClassVar[str] = "namespace.egress_set"

    mode: EgressMode
    allow: tuple[EgressRule, ...] = ()

    def validate(self) -> None:
        super().validate()
        if self.mode not in ("deny", "public", "allow"):
            raise InvalidEvent("mode", f"{self.mode!r} is not deny, public or allow")
        if self.mode != "allow" and self.allow:
            raise InvalidEvent("allow", "host rules are for mode `allow`")
        if len(self.allow) > MAX_EGRESS_RULES:
            raise InvalidEvent("allow", f"more than {MAX_EGRESS_RULES} rules")
        for i, rule in enumerate(self.allow):
            field = f"allow[{i}]"
            if not isinstance(rule, EgressRule):
                raise InvalidEvent(field, "must be an EgressRule")
            host = rule.host[2:] if rule.host.startswith("*.") else rule.host
            # An IPv4 address in its canonical dotted form is a destination too (a
            # database on the operator's network has one): exact, never a wildcard. The
            # gateway still refuses private, loopback and metadata addresses unless the
            # operator allows them (docs/egress.md).
            if not (host == rule.host and _canonical_ipv4(host)):
                v.host_pattern(f"{field}.host", host)
            if "/" in host:
                raise InvalidEvent(f"{field}.host", "a host, without a path")
            if len(rule.ports) > MAX_RULE_PORTS:
                raise InvalidEvent(f"{field}.ports", f"more than {MAX_RULE_PORTS} ports")
            for j, port in enumerate(rule.ports):
                if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
                    raise InvalidEvent(f"{field}.ports[{j}]", f"{port!r} is not a port")


def _canonical_ipv4(host: str) -> bool:
    try:
        return str(ipaddress.IPv4Address(host)) == host
    except ValueError:
        return False


class _GrantEvent(NamespaceScoped, frozen=True, kw_only=True):
    grantee: str
    worker: str = "*"

    def validate(self) -> None:
        super().validate()
        v.name("grantee", self.grantee)
        if self.grantee == self.namespace:
            raise InvalidEvent("grantee", "a namespace needs no grant to call itself")
        if self.worker != "*":
            v.name("worker", self.worker)


class ServiceGranted(_GrantEvent, frozen=True, kw_only=True):
    """`grantee` may bind `worker` (or every worker, `*`) of this namespace as a service."""

    TYPE: ClassVar[str] = "namespace.service_granted"


ALL_GRANTS = ""


class ServiceRevoked(_GrantEvent, frozen=True, kw_only=True):
    """`worker` names the grant revoked (a worker or `*`); `""` (ALL_GRANTS) revokes every
    grant to `grantee` at once, the `*` one and each per-worker one."""

    TYPE: ClassVar[str] = "namespace.service_revoked"

    def validate(self) -> None:
        if self.worker == ALL_GRANTS:
            NamespaceScoped.validate(self)
            v.name("grantee", self.grantee)
            return
        super().validate()


MAX_WALL_MS = 15 * 60 * 1000
MAX_SUBREQUESTS = 100_000
# Fair shares of the shared engines (services/fairshare.py): what one namespace may hold.
MAX_SHARE = 4096
SHARE_FIELDS = ("workflow_slots", "queue_batches", "cron_runs", "tails",
                "hyperdrive_connections")


class NamespaceLimitsSet(NamespaceScoped, frozen=True, kw_only=True):
    """Per-request budgets of the namespace's workers and its fair shares of the shared
    engines; 0 means the platform default (no wall-time bound; `DEFAULT_SUBREQUESTS`
    outbound fetches per request; each engine's configured share)."""

    TYPE: ClassVar[str] = "namespace.limits_set"

    wall_ms: int = 0
    subrequests: int = 0
    # Added after v1 events were written: absent in old events, decoded as 0 (the default).
    workflow_slots: int = 0
    queue_batches: int = 0
    cron_runs: int = 0
    tails: int = 0
    # Server connections all the namespace's Hyperdrive configs may hold at the origin
    # (docs/hyperdrive.md); added later, decoded as 0 (the pooler's default) when absent.
    hyperdrive_connections: int = 0

    def validate(self) -> None:
        super().validate()
        shares = tuple((name, getattr(self, name), MAX_SHARE) for name in SHARE_FIELDS)
        for name, value, bound in (("wall_ms", self.wall_ms, MAX_WALL_MS),
                                   ("subrequests", self.subrequests, MAX_SUBREQUESTS),
                                   *shares):
            if type(value) is not int or not 0 <= value <= bound:
                raise InvalidEvent(name, f"must be an integer in 0..{bound}")


PolicyEvent = EgressPolicySet | ServiceGranted | ServiceRevoked | NamespaceLimitsSet

CLASSES: tuple[type[PolicyEvent], ...] = (EgressPolicySet, ServiceGranted, ServiceRevoked,
                                          NamespaceLimitsSet)
