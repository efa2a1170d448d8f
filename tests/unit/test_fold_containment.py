"""Strikes against namespaces and the hold they lead to, in the fold."""

from __future__ import annotations

from typing import Any

import pytest

from eventlog import InvalidEvent
from eventlog import events as ev
from projections import keys
from tests.factories import T0, upload
from tests.unit.test_fold import Harness, accepted


def strike(worker: str = "spin", version: str | None = "v1", **kw: object) -> ev.NamespaceStruck:
    fields: dict[str, object] = {"hold_after": 3, "window_s": 60, **kw}
    return ev.NamespaceStruck(namespace="acme", worker=worker, version_id=version,
                              reason="hang", **fields)  # type: ignore[arg-type]


def doc(h: Harness, key: str, field: str) -> dict[str, Any]:
    found = h.get(key, field)
    assert isinstance(found, dict), found
    return found


def acme() -> Harness:
    h = Harness()
    assert accepted(h.send(ev.NamespaceCreated(namespace="acme")))
    return h


def test_strikes_of_fresh_versions_add_up_to_a_hold_of_the_namespace() -> None:
    h = acme()
    for n, vid in enumerate(("v1", "v2")):
        assert accepted(h.send(strike(version=vid), at=T0 + n * 1000))
        assert "held" not in h.get(keys.NAMESPACES, "acme")  # type: ignore[operator]
    assert accepted(h.send(strike(worker="other", version="v3"), at=T0 + 2000))
    assert doc(h, keys.NAMESPACES, "acme")["held"]["strikes"] == 3
    record = doc(h, keys.QUARANTINE, "acme")
    assert (record["scope"], record["worker"], record["by"]) == ("namespace", None, "tester")
    strikes = doc(h, keys.STRIKES, "acme")
    assert strikes["held"] and len(strikes["strikes"]) == 3


def test_strikes_outside_the_window_are_forgotten() -> None:
    h = acme()
    assert accepted(h.send(strike(), at=T0))
    assert accepted(h.send(strike(), at=T0 + 30_000))
    assert accepted(h.send(strike(), at=T0 + 61_000))  # the first has left the window
    assert h.get(keys.QUARANTINE, "acme") is None
    assert doc(h, keys.STRIKES, "acme")["strikes"] == [T0 + 30_000, T0 + 61_000]


def test_only_a_lift_ends_a_hold_and_the_strikes_start_over() -> None:
    h = acme()
    assert accepted(h.send(upload("acme", "spin", "v1")))
    for n in range(3):
        assert accepted(h.send(strike(), at=T0 + n))
    # Deploying again changes nothing.
    assert accepted(h.send(upload("acme", "spin", "v2")))
    assert accepted(h.send(ev.VersionPromoted(namespace="acme", worker="spin", version_id="v2")))
    assert h.get(keys.QUARANTINE, "acme") is not None
    assert accepted(h.send(ev.NamespaceQuarantineLifted(namespace="acme", note="fixed")))
    assert h.get(keys.QUARANTINE, "acme") is None and h.get(keys.STRIKES, "acme") is None
    assert "held" not in h.get(keys.NAMESPACES, "acme")  # type: ignore[operator]
    again = h.send(ev.NamespaceQuarantineLifted(namespace="acme"))
    assert (again.accepted, again.code) == (False, "not_quarantined")
    assert accepted(h.send(strike(), at=T0 + 10))
    assert h.get(keys.QUARANTINE, "acme") is None  # one strike, counted from zero


def test_strikes_need_the_namespace_and_a_valid_policy() -> None:
    h = Harness()
    missing = h.send(strike())
    assert (missing.accepted, missing.code) == (False, "namespace_missing")
    for bad in ({"hold_after": 0}, {"window_s": 0}, {"reason": "operator"}):
        payload = {"namespace": "acme", "worker": "w", "reason": "hang", **bad}
        with pytest.raises(InvalidEvent):
            ev.NamespaceStruck(**payload).validate()  # type: ignore[arg-type]
