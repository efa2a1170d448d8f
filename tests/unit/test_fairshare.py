"""FairShare: per-namespace caps and round-robin turns between waiting namespaces."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.fairshare import FairShare, FairShareMetrics, NamespaceShares


def _share(capacity: int, cap: int | dict[str, int], **kw: Any) -> FairShare:
    caps = cap if isinstance(cap, dict) else {}
    return FairShare("test", capacity, lambda ns: caps.get(ns, cap if isinstance(cap, int)
                                                             else capacity), **kw)


async def test_a_namespace_never_holds_more_than_its_cap() -> None:
    share = _share(8, 3)
    leases = [share.try_slot("a") for _ in range(5)]
    assert sum(lease is not None for lease in leases) == 3
    assert share.held("a") == 3
    # ...and the rest of the capacity is still another namespace's.
    assert share.try_slot("b") is not None


async def test_a_freed_slot_goes_to_the_next_namespace_not_the_next_waiter() -> None:
    share = _share(2, 2)
    held = [await share.acquire("noisy"), await share.acquire("noisy")]
    order: list[str] = []

    async def want(ns: str) -> None:
        async with share.slot(ns):
            order.append(ns)
            await asyncio.sleep(0)

    noisy = [asyncio.create_task(want("noisy")) for _ in range(50)]
    await asyncio.sleep(0)
    quiet = asyncio.create_task(want("quiet"))
    await asyncio.sleep(0)
    assert share.waiting("noisy") == 50 and share.waiting("quiet") == 1
    held[0].release()
    await asyncio.sleep(0)
    # noisy queued first, so its turn came first; quiet's turn is the very next one.
    held[1].release()
    await asyncio.gather(quiet, *noisy)
    assert order.index("quiet") <= 1, order


async def test_a_namespace_below_its_cap_does_not_wait_behind_one_at_its_cap() -> None:
    share = _share(10, 4)
    for _ in range(4):
        await share.acquire("noisy")
    waiting = asyncio.create_task(share.acquire("noisy"))
    await asyncio.sleep(0)
    assert not waiting.done()
    lease = await asyncio.wait_for(share.acquire("quiet"), 0.1)
    assert lease.namespace == "quiet"
    waiting.cancel()


async def test_cancelled_waiters_leave_no_trace() -> None:
    share = _share(1, 1)
    first = await share.acquire("a")
    waiter = asyncio.create_task(share.acquire("b"))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    first.release()
    assert share.in_use == 0 and share.waiting("b") == 0
    assert share.try_slot("b") is not None


async def test_release_is_idempotent_and_caps_apply_on_recheck() -> None:
    caps = {"a": 1}
    share = FairShare("test", 4, lambda ns: caps[ns])
    lease = await share.acquire("a")
    second = asyncio.create_task(share.acquire("a"))
    await asyncio.sleep(0)
    assert not second.done()
    caps["a"] = 2
    share.recheck()
    await asyncio.wait_for(second, 0.1)
    lease.release()
    lease.release()
    assert share.held("a") == 1


async def test_metrics_show_held_and_waiting_per_namespace() -> None:
    registry = CollectorRegistry()
    share = _share(1, 1, metrics=FairShareMetrics(registry))
    lease = await share.acquire("a")
    waiter = asyncio.create_task(share.acquire("b"))
    await asyncio.sleep(0)
    labels = {"engine": "test", "namespace": "b"}
    assert registry.get_sample_value("wdl_fairshare_waiting", labels) == 1
    assert registry.get_sample_value("wdl_fairshare_held", {**labels, "namespace": "a"}) == 1
    lease.release()
    (await waiter).release()
    assert registry.get_sample_value("wdl_fairshare_waits_total", labels) == 1
    assert registry.get_sample_value("wdl_fairshare_held", labels) == 0


async def test_namespace_shares_reads_the_limits_record_with_a_ttl() -> None:
    docs: dict[str, Any] = {"ns": {"limits": {"tails": 3, "queue_batches": 0}}}
    reads: list[str] = []
    now = [0.0]

    async def doc(ns: str) -> dict[str, Any] | None:
        reads.append(ns)
        return docs.get(ns)

    shares = NamespaceShares(doc, {"tails": 8, "queue_batches": 16}, ttl_s=5,
                             clock=lambda: now[0])
    assert shares.cap("tails", "ns") == 8  # nothing read yet: the default
    await shares.refresh("ns")
    assert shares.cap("tails", "ns") == 3
    assert shares.cap("queue_batches", "ns") == 16  # 0 means the default
    docs["ns"]["limits"]["tails"] = 5
    await shares.refresh("ns")
    assert shares.cap("tails", "ns") == 3 and len(reads) == 1
    now[0] = 6
    await shares.refresh("ns")
    assert shares.of("tails")("ns") == 5
    await shares.refresh("missing")
    assert shares.cap("tails", "missing") == 8
    with pytest.raises(ValueError):
        NamespaceShares(doc, {"bogus": 1})
