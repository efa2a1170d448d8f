"""`wdl dev` runs the Durable Objects example unchanged (embedded, no servers): the DO
host starts with it, objects keep their SQLite storage under .wdl/dev/objects across
a restart, and the alarm fires."""

from __future__ import annotations

import time
from pathlib import Path

from harness.endpoints import ROOT
from tests.integration.test_dataplane_dev import Dev

HOST = "demo.workers.local"



def wait_for_reminder(dev: Dev, name: str) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while True:
        state: dict[str, object] = dev.get(HOST, f"/counter/{name}").json()
        if state["reminders"] == 1 and state["alarmPending"] is False:
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.1)


def test_wdl_dev_runs_the_counter_example_and_keeps_its_objects(dev: Dev) -> None:
    dev.start()
    dev.cli("ns", "create", "demo")
    dev.cli("deploy", str(ROOT / "examples" / "counter"), "--ns", "demo")
    assert dev.get(HOST, "/counter/a/inc").json() == {"count": 1, "reminders": 0}
    assert dev.get(HOST, "/counter/a/inc").json() == {"count": 2, "reminders": 0}
    assert dev.get(HOST, "/counter/b/inc").json() == {"count": 1, "reminders": 0}
    assert dev.get(HOST, "/counter/a/remind").json() == "reminder set"
    assert wait_for_reminder(dev, "a") == {"count": 2, "reminders": 1, "alarmPending": False}
    assert dev.interrupt() == 0
    assert list((Path(dev.env["WDL_DATA_DIR"]) / "objects").glob("*/*.sqlite"))

    dev.start()  # object storage is on disk under the data dir
    assert dev.get(HOST, "/counter/a/inc").json() == {"count": 3, "reminders": 1}
    assert dev.interrupt() == 0
