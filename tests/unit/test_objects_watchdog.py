"""The DO host's announcements: what the watchdog may blame."""

from __future__ import annotations

from services.objects.watchdog import MAX_OPEN, Announcements


def test_entries_that_ended_are_no_suspects() -> None:
    a = Announcements()
    a.enter("t1", "good", "calm", [])
    a.enter("t2", "bad", "spin", ["t1"])
    assert a.suspects() == {"bad": "spin"}
    a.enter("t3", "good", "calm", [])
    assert a.suspects() == {"bad": "spin", "good": "calm"}  # two namespaces: nobody
    a.clear()
    assert a.suspects() == {}


def test_entries_whose_end_never_came_are_bounded() -> None:
    a = Announcements()
    for n in range(MAX_OPEN + 10):
        a.enter(f"t{n}", f"ns{n}", "w", [])
    assert len(a.open) == MAX_OPEN and "t0" not in a.open
