"""Namespace limits in the fold: rendered into the namespace record only when set."""

from __future__ import annotations

import pytest

from eventlog import events as ev
from eventlog.errors import InvalidEvent
from projections import keys
from tests.unit.test_fold import Harness, accepted


def test_limits_are_rendered_when_set_and_dropped_when_reset() -> None:
    h = Harness()
    assert accepted(h.send(ev.NamespaceCreated(namespace="acme")))
    doc = h.get(keys.NAMESPACES, "acme")
    assert isinstance(doc, dict) and "limits" not in doc
    assert accepted(h.send(ev.NamespaceLimitsSet(namespace="acme", wall_ms=500, subrequests=3)))
    doc = h.get(keys.NAMESPACES, "acme")
    assert isinstance(doc, dict) and doc["limits"] == {"wall_ms": 500, "subrequests": 3}
    assert accepted(h.send(ev.NamespaceLimitsSet(namespace="acme")))
    doc = h.get(keys.NAMESPACES, "acme")
    assert isinstance(doc, dict) and "limits" not in doc
    assert h.send(ev.NamespaceLimitsSet(namespace="nope", wall_ms=1)).code == "namespace_missing"


@pytest.mark.parametrize("fields", [{"wall_ms": -1}, {"subrequests": 100_001},
                                    {"wall_ms": 16 * 60 * 1000}, {"subrequests": True}])
def test_out_of_range_limits_are_refused(fields: dict[str, int]) -> None:
    with pytest.raises(InvalidEvent):
        ev.NamespaceLimitsSet(namespace="acme", **fields).validate()


def test_fair_shares_are_rendered_beside_the_budgets_only_when_set() -> None:
    h = Harness()
    assert accepted(h.send(ev.NamespaceCreated(namespace="acme")))
    assert accepted(h.send(ev.NamespaceLimitsSet(namespace="acme", tails=3, queue_batches=7)))
    doc = h.get(keys.NAMESPACES, "acme")
    assert isinstance(doc, dict)
    assert doc["limits"] == {"wall_ms": 0, "subrequests": 0, "tails": 3, "queue_batches": 7}


def test_an_old_limits_event_without_shares_still_decodes() -> None:
    # v1 events written before the shares existed carry only the budgets.
    import msgspec

    old = msgspec.json.encode({"namespace": "acme", "wall_ms": 5, "subrequests": 2})
    event = msgspec.json.decode(old, type=ev.NamespaceLimitsSet)
    assert (event.tails, event.workflow_slots, event.cron_runs, event.queue_batches) == (0,) * 4


@pytest.mark.parametrize("fields", [{"tails": -1}, {"cron_runs": 4097},
                                    {"workflow_slots": True}])
def test_out_of_range_shares_are_refused(fields: dict[str, int]) -> None:
    with pytest.raises(InvalidEvent):
        ev.NamespaceLimitsSet(namespace="acme", **fields).validate()
