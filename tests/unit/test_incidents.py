"""Finding the culprit of a workerd hang from the gateway's markers (IncidentDesk)."""

from __future__ import annotations

from services.state.incidents import IncidentDesk, IncidentPolicy, Target, parse_targets

A = Target("bad", "spin", "v1")
B = Target("good", "calm", "v7")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def same(t: Target) -> Target:
    return t


async def test_a_single_suspect_gets_strikes_until_quarantine() -> None:
    desk = IncidentDesk(IncidentPolicy(strikes=3))
    for n in range(3):
        desk.observe(f"gw-{n}", [A])
        finding = await desk.incident(f"gw-{n}", "hang", same)
        assert finding.blamed == (A,) and not finding.precise
    assert finding.quarantine == ((A, 3),)


async def test_several_suspects_go_on_probation_and_an_announced_entry_is_exact() -> None:
    clock = Clock()
    desk = IncidentDesk(IncidentPolicy(strikes=2, probation_s=60), clock=clock)
    desk.observe("gw-1", [A, B])
    first = await desk.incident("gw-1", "hang", same)
    assert first.blamed == () and set(first.probation) == {A, B}
    assert desk.on_probation("bad", "spin") and desk.on_probation("good", "calm")
    # B ran and ended, A entered and never did: only A is blamed, exactly.
    desk.enter("gw-2", "t1", B)
    desk.enter("gw-2", "t2", A, done=["t1"])
    second = await desk.incident("gw-2", "hang", same)
    assert second.blamed == (A,) and second.precise
    desk.enter("gw-3", "t3", A)
    third = await desk.incident("gw-3", "crash", same)
    assert third.quarantine == ((A, 2),)
    desk.settled(A)
    assert not desk.on_probation("bad", "spin")
    clock.now += 61
    assert desk.expire() == {"good"} and not desk.on_probation("good", "calm")


async def test_strikes_expire_and_truncated_rounds_blame_nobody() -> None:
    clock = Clock()
    desk = IncidentDesk(IncidentPolicy(strikes=2, window_s=10), clock=clock)
    desk.observe("gw-1", [A])
    await desk.incident("gw-1", "hang", same)
    clock.now += 11
    desk.observe("gw-2", [A])
    assert (await desk.incident("gw-2", "hang", same)).quarantine == ()
    desk.observe("gw-3", [A], truncated=True)
    truncated = await desk.incident("gw-3", "hang", same)
    assert truncated.blamed == () and truncated.probation == (A,)
    # An incident of a process nobody heard from blames nobody.
    assert (await desk.incident("gw-unknown", "crash", same)).blamed == ()


async def test_versions_are_resolved_and_one_suspect_per_worker() -> None:
    desk = IncidentDesk()
    desk.observe("gw-1", [Target("bad", "spin"), A])
    finding = await desk.incident("gw-1", "hang", same)
    assert finding.blamed == (A,)

    async def active(t: Target) -> Target:
        return Target(t.namespace, t.worker, "v9")

    desk.observe("gw-2", [Target("bad", "spin")])
    assert (await desk.incident("gw-2", "hang", active)).blamed == (Target("bad", "spin", "v9"),)


def test_markers_from_the_gateway_are_parsed_defensively() -> None:
    targets, cut = parse_targets([["a", "b", None], ["a", "c", "v1"], "junk", ["", "x", None],
                                  ["a", "b", 5], ["a" * 200, "b", None]], 10)
    assert targets == [Target("a", "b"), Target("a", "c", "v1")] and not cut
    assert parse_targets([["a", "b", None]] * 5, 2)[1] is True
    assert parse_targets({"not": "a list"}, 10) == ([], False)
