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
