"""Placement rules that both adapters and the projector depend on."""

from __future__ import annotations

import pytest

from eventlog import AggregateKind, partition_for, partition_key
from tests.eventlog_samples import envelope, every_event

pytestmark = pytest.mark.unit


def test_namespace_and_worker_events_are_keyed_by_namespace() -> None:
    assert partition_key(AggregateKind.NAMESPACE, "acme") == "acme"
    assert partition_key(AggregateKind.WORKER, "acme/api") == "acme"


def test_global_aggregates_are_keyed_by_their_id() -> None:
    assert partition_key(AggregateKind.HOST, "api.acme.example/v1/") == "api.acme.example/v1/"
    assert partition_key(AggregateKind.LEASE, "cron/acme") == "cron/acme"
    assert partition_key(AggregateKind.TOKEN, "tok_01") == "tok_01"


def test_every_event_of_a_namespace_shares_one_partition() -> None:
    keyed = [
        envelope(e, p)
        for e, p in every_event()
        if envelope(e, p).aggregate_kind in (AggregateKind.NAMESPACE, AggregateKind.WORKER)
    ]
    assert len(keyed) >= 9
    assert {partition_for(env.partition_key, 16) for env in keyed} == {partition_for("acme", 16)}


def test_placement_is_pinned() -> None:
    # Changing these moves aggregates between partitions of existing logs.
    keys = ("acme", "globex", "cron/acme", "tok_01")
    assert [partition_for(k, 16) for k in keys] == [14, 10, 3, 14]
    assert [partition_for(k, 7) for k in keys] == [6, 2, 4, 3]
    assert partition_for("ünï", 1000) == 26


def test_partition_count_must_be_positive() -> None:
    with pytest.raises(ValueError):
        partition_for("acme", 0)
