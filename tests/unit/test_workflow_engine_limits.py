"""The engine's bounds and report handling, with a scripted invocation in place of the
gateway (the real path is tests/integration/test_workflows_e2e.py): what the engine
records for each report, on the real SQLite log."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from services.workflows.engine import Engine, Limits, WorkflowError
from services.workflows.model import Instance, fold_all
from services.workflows.store import SqliteWorkflowStore

pytestmark = pytest.mark.unit


class Script:
    """Answers each invocation with the next report of a tenant that does `steps` steps."""

    def __init__(self, value: Any, steps: int) -> None:
        self.value, self.steps = value, steps

    async def invoke(self, inst: Instance) -> dict[str, Any]:
        done = len(inst.steps)
        if done == self.steps:
            return {"kind": "complete", "output": done}
        return {"kind": "step", "key": f"do:s#{done + 1}", "ok": True, "value": self.value}


class Nonsense:
    async def invoke(self, inst: Instance) -> dict[str, Any]:
        return {"kind": "sleep"}  # no key, no until


async def finish(engine: Engine, key: str) -> Instance:
    for _ in range(400):
        inst = engine.states[key]
        if inst.finished:
            return inst
        await asyncio.sleep(0.01)
    raise AssertionError(engine.states[key])


async def run(tmp_path: Path, invoker: Any, limits: Limits) -> tuple[Instance, dict[str, Any]]:
    store = SqliteWorkflowStore(tmp_path / "wf.sqlite")
    await store.start()
    engine = Engine(store, invoker, limits=limits, generation=1)
    try:
        await engine.start()
        inst = await engine.create("ns", "wf", "w", "v1", "C", "a", {"n": 1})
        done = await finish(engine, inst.key)
        rebuilt = fold_all(await store.load())[inst.key].status_view()
    finally:
        await engine.stop()
        await store.stop()
    return done, rebuilt


async def test_steps_past_the_history_bound_error_the_instance(tmp_path: Path) -> None:
    done, rebuilt = await run(tmp_path, Script({"v": 1}, 50), Limits(max_steps=10))
    assert done.status == "errored" and "10 steps" in done.error["message"]  # type: ignore[index]
    assert len(done.steps) == 10 and rebuilt == done.status_view()


async def test_results_past_the_byte_bound_error_the_instance(tmp_path: Path) -> None:
    done, _ = await run(tmp_path, Script({"v": "x" * 1000}, 50),
                        Limits(max_history_bytes=5000))
    assert done.status == "errored" and "bytes of step results" in done.error["message"]  # type: ignore[index]
    assert 4 <= len(done.steps) <= 5


async def test_a_step_result_over_the_limit_fails_the_step(tmp_path: Path) -> None:
    done, _ = await run(tmp_path, Script({"v": "x" * 200}, 1), Limits(max_result_bytes=100))
    assert done.steps["do:s#1"]["ok"] is False
    assert done.status == "complete"  # the script goes on; a real run() would see the throw


FAST_FAILURES = Limits(max_invoke_failures=3, failure_backoff_s=0.05)


async def test_a_senseless_report_counts_as_a_failed_invocation(tmp_path: Path) -> None:
    done, rebuilt = await run(tmp_path, Nonsense(), FAST_FAILURES)
    assert done.status == "errored" and "invalid step report" in done.error["message"]  # type: ignore[index]
    assert "after 3 failed invocations" in done.error["message"]  # type: ignore[index]
    assert rebuilt["status"] == "errored"


class Raising:
    """An invoker that fails in a way nobody planned for, and counts its calls."""

    def __init__(self, exc: BaseException) -> None:
        self.exc, self.calls = exc, 0
        self.at: list[float] = []

    async def invoke(self, inst: Instance) -> dict[str, Any]:
        self.calls += 1
        self.at.append(asyncio.get_running_loop().time())
        raise self.exc


@pytest.mark.parametrize("exc", [RecursionError("maximum recursion depth exceeded"),
                                 TimeoutError(), KeyError("x"), RuntimeError("boom")])
async def test_any_failure_of_an_invocation_backs_off_and_ends_errored(
        tmp_path: Path, exc: BaseException) -> None:
    invoker = Raising(exc)
    done, rebuilt = await run(tmp_path, invoker, FAST_FAILURES)
    assert done.status == "errored" and rebuilt["status"] == "errored"
    assert invoker.calls == 4  # 1 + 3 failures counted, then errored: no tight loop
    gaps = [b - a for a, b in zip(invoker.at, invoker.at[1:], strict=False)]
    assert all(g >= 0.04 for g in gaps) and gaps[2] >= 2 * gaps[0] * 0.9, gaps


class ChargingRunner:
    """What workerd/tenant/workflows.js does: a step whose result cannot be read is
    charged with the failed invocation on the next one, under its retry limit (2)."""

    def __init__(self) -> None:
        self.calls = 0

    async def invoke(self, inst: Instance) -> dict[str, Any]:
        self.calls += 1
        key = "do:deep#1"
        if key in inst.steps:
            return {"kind": "error", "error": inst.steps[key]["error"]}
        attempt = inst.attempts.get(key, 0) + 1
        failure = inst.history().get("failure")
        if failure:
            final = attempt > 2
            return {"kind": "step", "key": key, "ok": False, "error": failure["error"],
                    "attempt": attempt, "final": final, "delay_ms": 0 if final else 10}
        deep: list[Any] = []
        for _ in range(100):
            deep = [deep]
        return {"kind": "step", "key": key, "ok": True, "value": {"v": deep}, "attempt": attempt}


async def test_a_too_deep_result_is_charged_to_its_step(tmp_path: Path) -> None:
    runner = ChargingRunner()
    done, _ = await run(tmp_path, runner, FAST_FAILURES)
    assert done.status == "errored", done
    assert "nested deeper than 64 levels" in done.error["message"]  # type: ignore[index]
    assert done.attempts["do:deep#1"] == 3 and runner.calls == 7


class Loud:
    async def invoke(self, inst: Instance) -> dict[str, Any]:
        if inst.steps:
            return {"kind": "complete", "output": None}
        return {"kind": "step", "key": "do:s#1", "ok": False, "final": True, "attempt": 1,
                "error": {"name": "E" * 5000, "message": "m" * 3_000_000, "extra": [1]}}


async def test_step_errors_are_clipped(tmp_path: Path) -> None:
    done, _ = await run(tmp_path, Loud(), Limits())
    error = done.steps["do:s#1"]["error"]
    assert set(error) == {"name", "message"}
    assert len(error["name"]) == 256 and len(error["message"]) == 8192


async def test_unfinished_instances_of_a_namespace_are_bounded(tmp_path: Path) -> None:
    store = SqliteWorkflowStore(tmp_path / "wf.sqlite")
    await store.start()
    engine = Engine(store, Gate(), limits=Limits(max_live_instances=3), generation=1)
    try:
        await engine.start()
        for i in range(3):
            await engine.create("slow", "wf", "w", "v1", "C", f"s{i}", {})
        with pytest.raises(WorkflowError) as refused:
            await engine.create("slow", "wf", "w", "v1", "C", "s3", {})
        assert (refused.value.status, refused.value.code) == (429, "too_many_instances")
        await engine.create("other", "wf", "w", "v1", "C", "o", {})  # its own bound
        await engine.control("slow", "wf", "s0", "terminate")
        await engine.create("slow", "wf", "w", "v1", "C", "s3", {})  # room again
    finally:
        await engine.stop()
        await store.stop()


class Gate:
    """Holds every invocation of namespace `slow` until released; others complete."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.inside: dict[str, int] = {}

    async def invoke(self, inst: Instance) -> dict[str, Any]:
        self.inside[inst.namespace] = self.inside.get(inst.namespace, 0) + 1
        try:
            if inst.namespace == "slow":
                await self.release.wait()
            return {"kind": "complete", "output": inst.namespace}
        finally:
            self.inside[inst.namespace] -= 1


async def test_one_namespace_holds_at_most_its_share_of_the_slots(tmp_path: Path) -> None:
    store = SqliteWorkflowStore(tmp_path / "wf.sqlite")
    await store.start()
    gate = Gate()
    engine = Engine(store, gate, limits=Limits(concurrency=4, per_namespace=2), generation=1)
    try:
        await engine.start()
        for i in range(6):
            await engine.create("slow", "wf", "w", "v1", "C", f"s{i}", {})
        await asyncio.sleep(0.1)
        assert gate.inside.get("slow") == 2
        other = await engine.create("fast", "wf", "w", "v1", "C", "f", {})
        assert (await finish(engine, other.key)).status == "complete"
        gate.release.set()
    finally:
        await engine.stop()
        await store.stop()


async def test_an_operators_share_for_a_namespace_replaces_the_default(tmp_path: Path) -> None:
    from services.fairshare import NamespaceShares

    docs = {"slow": {"limits": {"workflow_slots": 3}}}

    async def doc(ns: str) -> dict[str, Any] | None:
        return docs.get(ns)

    store = SqliteWorkflowStore(tmp_path / "wf.sqlite")
    await store.start()
    gate = Gate()
    shares = NamespaceShares(doc, {"workflow_slots": 1})
    engine = Engine(store, gate, limits=Limits(concurrency=8, per_namespace=1), generation=1,
                    shares=shares)
    try:
        await engine.start()
        for i in range(6):
            await engine.create("slow", "wf", "w", "v1", "C", f"s{i}", {})
        await asyncio.sleep(0.1)
        assert gate.inside.get("slow") == 3
        assert engine.metrics.registry.get_sample_value(
            "wdl_fairshare_held", {"engine": "workflows", "namespace": "slow"}) == 3
        gate.release.set()
    finally:
        await engine.stop()
        await store.stop()


class Relentless:
    """A step that throws at once, every time, with retries {limit: 1e9, delay: 0}."""

    def __init__(self) -> None:
        self.calls = 0

    async def invoke(self, inst: Instance) -> dict[str, Any]:
        self.calls += 1
        attempt = inst.attempts.get("do:s#1", 0) + 1
        return {"kind": "step", "key": "do:s#1", "ok": False, "final": False,
                "attempt": attempt, "delay_ms": 0,
                "error": {"name": "Error", "message": "x" * 4000}}


async def test_retried_attempts_count_against_the_history_bound(tmp_path: Path) -> None:
    # Every attempt is a record in the workflow log: a step retried without end with no
    # delay grew the log without end. Its attempts now count against the history bound.
    runner = Relentless()
    done, rebuilt = await run(tmp_path, runner, Limits(max_history_bytes=64 * 1024))
    assert done.status == "errored", done
    assert "history" in done.error["message"]  # type: ignore[index]
    assert 10 <= runner.calls <= 20, runner.calls
    assert rebuilt["status"] == "errored"
