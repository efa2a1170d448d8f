"""Aggregate kinds, their ids and the one partition-key rule everyone shares."""

from __future__ import annotations

import enum


class AggregateKind(enum.StrEnum):
    NAMESPACE = "namespace"
    WORKER = "worker"
    HOST = "host"
    LEASE = "lease"
    TOKEN = "token"
    KV_NAMESPACE = "kv"
    R2_BUCKET = "r2"
    D1_DATABASE = "d1"
    QUEUE = "queue"
    HYPERDRIVE = "hyperdrive"


# Tenant resources live on their namespace's partition, so the fold can check
# "the bound resource exists" and "no active version binds it" locally.
_KEYED_BY_NAMESPACE = frozenset({AggregateKind.NAMESPACE, AggregateKind.WORKER,
                                 AggregateKind.KV_NAMESPACE, AggregateKind.R2_BUCKET,
                                 AggregateKind.D1_DATABASE,
                                 AggregateKind.QUEUE, AggregateKind.HYPERDRIVE})


def resource_aggregate_id(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def worker_aggregate_id(namespace: str, worker: str) -> str:
    return f"{namespace}/{worker}"


def partition_key(kind: AggregateKind, aggregate_id: str) -> str:
    """The key that decides an event's partition.

    Namespace and worker aggregates are keyed by the namespace, so every event
    of one namespace is totally ordered on one partition and the projector can
    check cross-aggregate rules (a worker needs its namespace) without
    coordination. Hosts, leases and tokens are global and keyed by their own
    id, so they spread across partitions. A host aggregate's id is the host
    name (every pattern of one host on one partition, so ownership is judged
    there); v1 host events with a path kept their whole pattern as their id
    (eventlog/events/hosts.py).
    """
    if kind in _KEYED_BY_NAMESPACE:
        namespace, _, _ = aggregate_id.partition("/")
        return namespace
    return aggregate_id
