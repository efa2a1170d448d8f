"""The workflow instance fold: statuses, replayable history, restart, terminate."""

from __future__ import annotations

from typing import Any

import pytest

from services.workflows.model import fold_all
from services.workflows.store import WorkflowRecord

pytestmark = pytest.mark.unit
KEY = "ns/orders/a"


def rec(type_: str, **data: Any) -> WorkflowRecord:
    return WorkflowRecord(instance=KEY, type=type_, at=10, gen=1, data=data)


CREATED = rec("created", namespace="ns", workflow="orders", id="a", worker="w", version="v1",
              class_name="Flow", params={"n": 1})


def test_statuses_follow_the_records() -> None:
    seq = [CREATED]
    assert fold_all(seq)[KEY].status == "queued"
    seq.append(rec("started"))
    assert fold_all(seq)[KEY].status == "running"
    seq.append(rec("sleeping", key="sleep:nap#1", until=99))
    inst = fold_all(seq)[KEY]
    assert inst.status == "waiting" and inst.pending == {"kind": "sleep", "key": "sleep:nap#1",
                                                         "until": 99}
    assert not inst.runnable(50)
    seq.append(rec("paused"))
    seq.append(rec("step_succeeded", key="sleep:nap#1", value=None))
    inst = fold_all(seq)[KEY]
    assert inst.status == "paused" and inst.pending is None  # woke while paused: stays paused
    seq.append(rec("resumed"))
    assert fold_all(seq)[KEY].status == "running"
    seq.append(rec("completed", output={"ok": True}))
    assert fold_all(seq)[KEY].status_view() == {"status": "complete", "output": {"ok": True}}


def test_retries_wait_and_a_final_failure_is_recorded() -> None:
    seq = [CREATED, rec("started"),
           rec("step_failed", key="do:x#1", attempt=1, final=False, retry_at=500,
               error={"name": "Error", "message": "boom"})]
    inst = fold_all(seq)[KEY]
    assert not inst.runnable(499) and inst.runnable(500)
    seq.append(rec("step_failed", key="do:x#1", attempt=2, final=True,
                   error={"name": "Error", "message": "boom"}))
    inst = fold_all(seq)[KEY]
    assert inst.history()["steps"]["do:x#1"] == {"ok": False, "error": {"name": "Error",
                                                                         "message": "boom"}}
    assert inst.attempts["do:x#1"] == 2 and inst.runnable(0)


def test_events_are_kept_until_a_wait_consumes_them() -> None:
    seq = [CREATED, rec("event_received", event_type="go", payload=1)]
    assert fold_all(seq)[KEY].events[0]["consumed"] is False
    seq.append(rec("step_succeeded", key="wait:go#1", value={"payload": 1}, consumed=0))
    assert fold_all(seq)[KEY].events[0]["consumed"] is True


def test_terminate_is_final_until_a_restart_starts_over() -> None:
    seq = [CREATED, rec("step_succeeded", key="do:a#1", value={"v": 1}), rec("terminated"),
           rec("step_succeeded", key="do:b#1", value={"v": 2})]
    inst = fold_all(seq)[KEY]
    assert inst.status == "terminated" and "do:b#1" not in inst.steps
    seq.append(rec("restarted"))
    inst = fold_all(seq)[KEY]
    assert inst.status == "queued" and inst.steps == {} and inst.epoch == 1


def test_a_second_create_of_an_id_is_ignored() -> None:
    other = rec("created", namespace="ns", workflow="orders", id="a", worker="w",
                version="v2", class_name="Flow", params=None)
    assert fold_all([CREATED, other])[KEY].version == "v1"
