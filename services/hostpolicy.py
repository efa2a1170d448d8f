"""How the platform treats host claims (docs/hosts.md): its domain, which no tenant may
claim; whether a claim needs a DNS ownership proof before it routes; where proofs are
looked up. Read by the platform wiring, the control API and `python -m services.api`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class HostPolicy:
    domain: str = "workers.local"
    verification: bool = True
    resolver: str | None = None  # "ip[:port]", comma-separated; None: the system's resolvers


def verification_from_env(env: Mapping[str, str]) -> bool:
    """`WDL_HOST_VERIFICATION`: `dns` (the default: claims route once proven) or `off`."""
    value = env.get("WDL_HOST_VERIFICATION", "dns").strip().lower()
    if value not in ("dns", "off"):
        raise ValueError(f"WDL_HOST_VERIFICATION={value!r}: use dns or off")
    return value == "dns"
