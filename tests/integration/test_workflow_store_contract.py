"""One contract for the workflow log's adapters: SQLite (embedded) and Kafka (real broker).

Appended records come back complete and in append order per instance, from a
fresh store as well (what an engine taking the lease over reads); a record of a
fenced-off writer (older lease generation) does not move the instance.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from harness.endpoints import Endpoints
from services.workflows.model import fold_all
from services.workflows.store import (
    KafkaWorkflowSettings,
    KafkaWorkflowStore,
    SqliteWorkflowStore,
    WorkflowRecord,
    WorkflowStore,
)

Factory = Callable[[], WorkflowStore]


@pytest.fixture(params=["sqlite", "kafka"])
async def make_store(request: pytest.FixtureRequest, services: Endpoints, tmp_path: Path,
                     unique_name: Callable[[str], str]) -> AsyncIterator[Factory]:
    topic = unique_name("wfstore")
    bootstrap = services.kafka_bootstrap_servers
    assert bootstrap

    def make() -> WorkflowStore:
        if request.param == "sqlite":
            return SqliteWorkflowStore(tmp_path / "workflows.sqlite")
        return KafkaWorkflowStore(KafkaWorkflowSettings(bootstrap, topic=topic, partitions=3))
    yield make


def created(key: str, gen: int = 1) -> WorkflowRecord:
    ns, wf, iid = key.split("/")
    return WorkflowRecord(instance=key, type="created", at=1, gen=gen, data={
        "namespace": ns, "workflow": wf, "id": iid, "worker": "w", "version": "v1",
        "class_name": "C", "params": {"n": 1}})


async def test_records_come_back_in_order_from_a_fresh_store(make_store: Factory) -> None:
    store = make_store()
    await store.start()
    keys = [f"ns/wf/i{n}" for n in range(20)]
    try:
        await store.append([created(k) for k in keys])
        for step in range(5):
            await store.append([WorkflowRecord(instance=k, type="step_succeeded", at=2 + step,
                                               gen=1, data={"key": f"do:s#{step}",
                                                            "value": {"v": step}})
                                for k in keys])
    finally:
        await store.stop()
    fresh = make_store()
    await fresh.start()
    try:
        records = await fresh.load()
    finally:
        await fresh.stop()
    assert len(records) == 20 * 6
    for k in keys:
        mine = [r for r in records if r.instance == k]
        assert [r.type for r in mine] == ["created"] + ["step_succeeded"] * 5
        assert [r.data.get("key") for r in mine[1:]] == [f"do:s#{s}" for s in range(5)]
    states = fold_all(records)
    assert all(s.status == "running" and len(s.steps) == 5 for s in states.values())


async def test_a_fenced_writer_does_not_move_an_instance(make_store: Factory) -> None:
    store = make_store()
    await store.start()
    try:
        await store.append([created("ns/wf/x"),
                            WorkflowRecord(instance="ns/wf/x", type="paused", at=2, gen=2),
                            # the old holder (generation 1) still writing after the takeover
                            WorkflowRecord(instance="ns/wf/x", type="completed", at=3, gen=1,
                                           data={"output": "stale"})])
        states = fold_all(await store.load())
    finally:
        await store.stop()
    assert states["ns/wf/x"].status == "paused" and states["ns/wf/x"].output is None
