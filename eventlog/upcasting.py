"""Read events written by older schema versions as the current version.

An upcaster turns the builtin form (dict) of one schema version of a type
into the next version. Chains are applied in order, so a v1 record is read
as v1 -> v2 -> ... -> current. Upcasters must be pure functions of the old
payload and the envelope header: replays have to reach the same result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from eventlog.events import CURRENT_VERSIONS

Payload = dict[str, Any]


@dataclass(frozen=True, slots=True)
class UpcastContext:
    """The envelope fields an upcaster may consult to fill new fields."""

    event_type: str
    occurred_at: int


Upcaster = Callable[[Payload, UpcastContext], Payload]


class UpcasterChain:
    def __init__(self, current_versions: Mapping[str, int]) -> None:
        self._current = dict(current_versions)
        self._steps: dict[tuple[str, int], Upcaster] = {}

    def register(self, event_type: str, from_version: int, upcaster: Upcaster) -> None:
        current = self._current.get(event_type)
        if current is None:
            raise ValueError(f"unknown event type {event_type!r}")
        if not 1 <= from_version < current:
            raise ValueError(f"{event_type} has no version {from_version} below {current}")
        if (event_type, from_version) in self._steps:
            raise ValueError(f"{event_type} v{from_version} already has an upcaster")
        self._steps[(event_type, from_version)] = upcaster

    def current_version(self, event_type: str) -> int | None:
        return self._current.get(event_type)

    def can_upcast(self, event_type: str, version: int) -> bool:
        current = self._current.get(event_type)
        if current is None or not 1 <= version <= current:
            return False
        return all((event_type, n) in self._steps for n in range(version, current))

    def upcast(self, payload: Payload, version: int, context: UpcastContext) -> Payload:
        """Apply every step from `version` to the current one (caller checks can_upcast)."""
        current = self._current[context.event_type]
        for step in range(version, current):
            payload = self._steps[(context.event_type, step)](payload, context)
        return payload

    def gaps(self) -> list[tuple[str, int]]:
        """(type, version) pairs below current that no upcaster covers."""
        return [
            (event_type, n)
            for event_type, current in sorted(self._current.items())
            for n in range(1, current)
            if (event_type, n) not in self._steps
        ]


# --- the steps of the catalogue's history ------------------------------------
# v1 shapes are the pre-release draft of the catalogue; the legacy encoder that
# wrote the fixtures in tests/fixtures/events keeps their exact definitions.


def _worker_version_uploaded_v1(payload: Payload, _: UpcastContext) -> Payload:
    """v1 stored `bundle_digest` as "sha256:<hex>", called crons `cron`, had no flags."""
    out = dict(payload)
    digest = str(out.pop("bundle_digest"))
    out["bundle_sha256"] = digest.removeprefix("sha256:")
    out["cron_triggers"] = out.pop("cron", [])
    out.setdefault("compatibility_flags", [])
    return out


def _lease_acquired_v1(payload: Payload, _: UpcastContext) -> Payload:
    """v1 counted the lease ttl in whole seconds."""
    out = dict(payload)
    out["ttl_ms"] = int(out.pop("ttl_seconds")) * 1000
    return out


_V1_ROLES = {"admin": "admin", "write": "deployer", "read": "observer"}


def _token_issued_v1(payload: Payload, _: UpcastContext) -> Payload:
    """v1 had read/write/admin roles and one optional namespace."""
    out = dict(payload)
    out["role"] = _V1_ROLES.get(str(out["role"]), str(out["role"]))
    namespace = out.pop("namespace", None)
    out["namespaces"] = [] if namespace is None else [namespace]
    return out


def _host_event_v1(payload: Payload, _: UpcastContext) -> Payload:
    """v1 keyed a host event by its whole pattern; v2 keys it by the host. A v1 pattern
    with a path keeps its old aggregate (the envelope says so) and is marked."""
    out = dict(payload)
    out["keyed_by_pattern"] = "/" in str(out["pattern"])
    return out


def default_chain() -> UpcasterChain:
    chain = UpcasterChain(CURRENT_VERSIONS)
    chain.register("worker.version_uploaded", 1, _worker_version_uploaded_v1)
    chain.register("lease.acquired", 1, _lease_acquired_v1)
    chain.register("token.issued", 1, _token_issued_v1)
    chain.register("host.claimed", 1, _host_event_v1)
    chain.register("host.released", 1, _host_event_v1)
    return chain


DEFAULT_CHAIN = default_chain()
