"""Quarantined versions in the fold: recorded, refused on promote, lifted, dropped."""

from __future__ import annotations

from eventlog import events as ev
from projections import keys
from tests.factories import upload
from tests.unit.test_fold import Harness, accepted


def serving() -> Harness:
    h = Harness()
    assert accepted(h.send(ev.NamespaceCreated(namespace="acme")))
    for vid in ("v1", "v2"):
        assert accepted(h.send(upload("acme", "api", vid)))
    assert accepted(h.send(ev.VersionPromoted(namespace="acme", worker="api", version_id="v1")))
    return h


def quarantine(vid: str = "v1") -> ev.VersionQuarantined:
    return ev.VersionQuarantined(namespace="acme", worker="api", version_id=vid, reason="hang",
                                 strikes=3, detail="spun")


def lift(vid: str = "v1") -> ev.QuarantineLifted:
    return ev.QuarantineLifted(namespace="acme", worker="api", version_id=vid)


def test_quarantine_is_rendered_on_the_worker_and_in_the_index() -> None:
    h = serving()
    assert accepted(h.send(quarantine()))
    worker = h.get(keys.workers("acme"), "api")
    assert isinstance(worker, dict) and worker["quarantined"] == ["v1"]
    record = h.get(keys.QUARANTINE, "acme/api/v1")
    assert isinstance(record, dict)
    assert (record["reason"], record["strikes"], record["by"]) == ("hang", 3, "tester")
    again = h.send(quarantine())
    assert (again.accepted, again.code) == (False, "already_quarantined")


def test_unknown_versions_cannot_be_quarantined() -> None:
    h = serving()
    assert h.send(quarantine("v9")).code == "version_missing"
    assert h.get(keys.QUARANTINE, "acme/api/v9") is None


def test_a_quarantined_version_cannot_be_promoted_until_lifted() -> None:
    h = serving()
    h.send(quarantine("v2"))
    refused = h.send(ev.VersionPromoted(namespace="acme", worker="api", version_id="v2"))
    assert (refused.accepted, refused.code) == (False, "version_quarantined")
    assert "wdl quarantine lift" in refused.message
    assert accepted(h.send(lift("v2")))
    assert accepted(h.send(ev.VersionPromoted(namespace="acme", worker="api", version_id="v2")))
    worker = h.get(keys.workers("acme"), "api")
    assert isinstance(worker, dict) and "quarantined" not in worker


def test_promoting_another_version_serves_again_and_keeps_the_record() -> None:
    h = serving()
    h.send(quarantine("v1"))
    assert accepted(h.send(ev.VersionPromoted(namespace="acme", worker="api", version_id="v2")))
    assert h.get(keys.routes("acme"), "api") == "v2"
    assert h.get(keys.QUARANTINE, "acme/api/v1") is not None
    rollback = h.send(ev.WorkerRolledBack(namespace="acme", worker="api", version_id="v1",
                                          reason="back"))
    assert rollback.code == "version_quarantined"


def test_lifting_twice_is_refused_and_deleting_the_version_drops_it() -> None:
    h = serving()
    assert h.send(lift()).code == "not_quarantined"
    h.send(quarantine("v2"))
    assert accepted(h.send(ev.VersionDeleted(namespace="acme", worker="api", version_id="v2")))
    assert h.get(keys.QUARANTINE, "acme/api/v2") is None
    assert h.send(lift("v2")).code == "not_quarantined"


def test_invalid_quarantine_events_are_refused() -> None:
    import pytest

    from eventlog.errors import InvalidEvent

    with pytest.raises(InvalidEvent):
        ev.VersionQuarantined(namespace="acme", worker="api", version_id="v1",
                              reason="bored", strikes=1).validate()  # type: ignore[arg-type]
    with pytest.raises(InvalidEvent):
        ev.VersionQuarantined(namespace="acme", worker="api", version_id="v1",
                              reason="hang", strikes=-1).validate()
