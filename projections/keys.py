"""Names of the projection's keys, relative to a generation.

Every projected key is a hash. Stores prefix these names with their
generation (``wdl:g{N}:`` in Redis), so a rebuild can fill a shadow
generation while readers keep using the current one. `docs/redis-keys.md`
documents the layout.
"""

from __future__ import annotations

NAMESPACES = "namespaces"
HOSTS = "hosts"  # pattern -> JSON claim (namespace, worker, match, version, verified)
HOST_OWNERS = "host_owners"  # host -> JSON {namespace, verified, version} (docs/hosts.md)
CRON = "cron"
LEASES = "leases"
TOKENS = "tokens"
TOKEN_HASHES = "token_hashes"
APPLIED = "applied"
AGGREGATES = "aggregates"
EGRESS = "egress"  # namespace -> JSON egress policy
GRANTS = "grants"  # "target_ns/worker" -> JSON {source namespaces}
QUARANTINE = "quarantine"  # "ns/worker/version" (or "ns": a held namespace) -> JSON record
STRIKES = "strikes"  # namespace -> JSON {strikes: [ms...], window_s, hold_after, last}
HYPERDRIVE = "hyperdrive"  # config id -> JSON config record (docs/hyperdrive.md)
QUEUE_CONSUMERS = "queue_consumers"  # "ns/queue" -> JSON consumer settings (docs/queues.md)


def workers(namespace: str) -> str:
    return f"workers:{namespace}"


def routes(namespace: str) -> str:
    return f"routes:{namespace}"


def versions(namespace: str, worker: str) -> str:
    return f"versions:{namespace}/{worker}"


def secrets(namespace: str, worker: str | None) -> str:
    return f"secrets:{namespace}" if worker is None else f"secrets:{namespace}/{worker}"


def cron_runs(namespace: str, worker: str) -> str:
    return f"cron_runs:{namespace}/{worker}"


def resources(kind: str, namespace: str) -> str:
    """Tenant resources of one kind (`kv`, `r2`, ...) in a namespace: name -> JSON record."""
    return f"res:{kind}:{namespace}"


def d1_backups(namespace: str, database: str) -> str:
    """Backups of one D1 database: backup id -> JSON {size, sha256, created_at, created_by}."""
    return f"d1_backups:{namespace}/{database}"


def verdicts(partition: int) -> str:
    return f"verdicts:{partition}"


def idempotency(partition: int) -> str:
    return f"idem:{partition}"


def dead_letters(partition: int) -> str:
    return f"dead:{partition}"
