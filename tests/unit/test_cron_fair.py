"""The cron dispatcher's fair share and the canonical form of a schedule (issue 23)."""

from __future__ import annotations

import asyncio

import pytest

from eventlog import validation as v
from eventlog.cron import canonical, first_duplicate
from eventlog.errors import InvalidEvent
from services.fairshare import FairShare


@pytest.mark.parametrize("a,b", [
    ("* * * * *", "*/1 * * * *"),
    ("* * * * *", "0-59 * * * *"),
    ("0 0 * * *", "0 0 * * 1-7"),
    ("0 0 * * *", "0 0 1-31 * *"),
    ("0 0 * * *", "0 0 * JAN-DEC *"),
    ("0 0 * * 6L", "0 0 * * FRIL"),
    ("5,10 * * * *", "10,5 * * * *"),
    ("0 12 * * MON", "0 12 * * 2"),
])
def test_equivalent_spellings_have_one_canonical_form(a: str, b: str) -> None:
    assert canonical(a) == canonical(b)
    assert first_duplicate([a, b]) == (a, b)


@pytest.mark.parametrize("a,b", [
    ("0 0 1-31 * 2", "0 0 * * 2"),   # day of month OR day of week: every day, not Mondays
    ("1-59 * * * *", "0-58 * * * *"),
    ("0 0 * * 2#1", "0 0 * * 2"),
    ("0 0 L * *", "0 0 31 * *"),
])
def test_different_schedules_stay_different(a: str, b: str) -> None:
    assert canonical(a) != canonical(b)
    assert first_duplicate([a, b]) is None


def test_duplicate_schedules_are_refused_naming_both() -> None:
    with pytest.raises(InvalidEvent) as info:
        v.distinct_schedules("triggers.crons", ["0 * * * *", "* * * * *", "*/1 * * * *"])
    assert '"* * * * *" and "*/1 * * * *" are the same schedule' in info.value.message


async def test_a_namespace_at_its_cap_waits_while_others_run() -> None:
    share = FairShare("cron", capacity=4, per_namespace=lambda ns: 2)
    held = [await share.acquire("a"), await share.acquire("a")]
    assert share.try_slot("a") is None
    waiter = asyncio.create_task(share.acquire("a"))
    await asyncio.sleep(0)
    assert share.waiting("a") == 1
    other = share.try_slot("b")
    assert other is not None, "a namespace under its cap must not wait behind another's queue"
    held[0].release()
    lease = await asyncio.wait_for(waiter, 1)
    assert share.held("a") == 2
    for x in (held[1], lease, other):
        x.release()
    assert share.in_use == 0


async def test_waiting_namespaces_are_served_round_robin() -> None:
    share = FairShare("cron", capacity=1, per_namespace=lambda ns: 10)
    first = await share.acquire("a")
    order: list[str] = []

    async def run(ns: str) -> None:
        async with share.slot(ns):
            order.append(ns)
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(run("a")) for _ in range(5)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(run("b")))
    await asyncio.sleep(0)
    first.release()
    await asyncio.gather(*tasks)
    # b queued after five of a's, and is served within one turn.
    assert order.index("b") <= 1, order


async def test_a_cancelled_waiter_gives_its_turn_away() -> None:
    share = FairShare("cron", capacity=1, per_namespace=lambda ns: 1)
    first = await share.acquire("a")
    gone = asyncio.create_task(share.acquire("b"))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    assert share.waiting("b") == 0
    first.release()
    assert share.in_use == 0
    lease = share.try_slot("c")
    assert lease is not None
    lease.release()
