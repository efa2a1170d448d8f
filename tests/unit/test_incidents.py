"""Finding the culprit namespace of a workerd hang from the gateway's markers."""

from __future__ import annotations

from services.state.incidents import IncidentDesk, IncidentPolicy, Target, parse_targets

A = Target("bad", "spin", "v1")
A2 = Target("bad", "spin", "v2")  # the same tenant, a fresh version
B = Target("good", "calm", "v7")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def same(t: Target) -> Target:
    return t


def gated(t: Target) -> Target:
    return Target(t.namespace, t.worker, t.version, gated=True)


async def test_a_single_suspect_namespace_is_blamed_whatever_version_ran() -> None:
    desk = IncidentDesk()
    desk.observe("gw-1", [A, A2, Target("bad", "other")])
    finding = await desk.incident("gw-1", "hang", same)
    assert [t.namespace for t in finding.blamed] == ["bad"] and not finding.precise
    assert finding.blamed[0].version is not None  # a target naming its version is preferred
    assert desk.on_probation("bad")  # from now on its requests are announced


async def test_several_namespaces_go_on_probation_then_the_announced_one_is_exact() -> None:
    clock = Clock()
    desk = IncidentDesk(IncidentPolicy(probation_s=60), clock=clock)
    desk.observe("gw-1", [A, B])
    first = await desk.incident("gw-1", "hang", same)
    assert first.blamed == () and first.probation == ("bad", "good")
    assert desk.on_probation("bad") and desk.on_probation("good")
    # Both gated now: B ran and ended, A entered and never did. B waiting for the gate in
    # the last round is no suspect: a gated request runs tenant code only once announced.
    desk.enter("gw-2", "t1", B)
    desk.enter("gw-2", "t2", A2, done=["t1"])
    desk.observe("gw-2", [gated(B)])
    second = await desk.incident("gw-2", "hang", same)
    assert second.blamed == (A2,) and second.precise
    # The shared incident is explained: the innocent's probation ends, the culprit's not.
    assert second.released == ("good",)
    assert not desk.on_probation("good") and desk.on_probation("bad")


async def test_an_innocent_holding_the_gate_is_not_blamed_for_an_ungated_spin() -> None:
    desk = IncidentDesk()
    desk.observe("gw-1", [A, B])
    await desk.incident("gw-1", "hang", same)  # both on probation
    # B's announced request is in flight (waiting on I/O) when a third tenant, never
    # suspected and so ungated, spins: both are candidates, nobody is struck.
    c = Target("third", "loop", "v3")
    desk.enter("gw-2", "t1", B)
    desk.observe("gw-2", [c, gated(A)])
    finding = await desk.incident("gw-2", "hang", same)
    assert finding.blamed == () and set(finding.probation) == {"good", "third"}


async def test_truncated_rounds_and_silent_processes_blame_nobody() -> None:
    clock = Clock()
    desk = IncidentDesk(IncidentPolicy(probation_s=10), clock=clock)
    desk.observe("gw-1", [A], truncated=True)
    truncated = await desk.incident("gw-1", "hang", same)
    assert truncated.blamed == () and truncated.probation == ("bad",)
    assert (await desk.incident("gw-unknown", "crash", same)).blamed == ()
    clock.now += 11
    assert desk.expire() == {"bad"} and not desk.on_probation("bad")


async def test_versions_are_resolved() -> None:
    desk = IncidentDesk()

    async def active(t: Target) -> Target:
        return Target(t.namespace, t.worker, "v9")

    desk.observe("gw-2", [Target("bad", "spin")])
    assert (await desk.incident("gw-2", "hang", active)).blamed == (Target("bad", "spin", "v9"),)


def test_markers_from_the_gateway_are_parsed_defensively() -> None:
    targets, cut = parse_targets([["a", "b", None], ["a", "c", "v1", True], "junk",
                                  ["", "x", None], ["a", "b", 5], ["a" * 200, "b", None],
                                  ["a", "d", None, "yes"]], 10)
    assert targets == [Target("a", "b"), Target("a", "c", "v1"), Target("a", "d")] and not cut
    assert [t.gated for t in targets] == [False, True, False]
    assert parse_targets([["a", "b", None]] * 5, 2)[1] is True
    assert parse_targets({"not": "a list"}, 10) == ([], False)
