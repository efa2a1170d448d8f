"""The projection store port: generations of hash keys plus applied positions.

A *generation* is a complete copy of the projection. Readers always read the
current generation; a rebuild fills a new one and `switch()` makes it current
in one atomic step (DESIGN invariant 5). Within a generation, `apply()` writes
a batch of effects and the new applied positions together, and only if the
stored positions are still the ones the writer started from (a
compare-and-set), so a stale replica cannot move a projection backwards.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Self

from projections import keys
from projections.changes import Changes


class StalePosition(Exception):
    """Another writer moved the applied positions since this one read them."""

    code = "stale_position"


class GenerationMissing(Exception):
    code = "generation_missing"


class VerdictWatch:
    """One event's verdict, expected from the store's change notifications.

    Registered before the event is appended, so no notification about it can come
    before the watch exists. A notification that carries the verdict (written to the
    current generation) sets `verdict`; one that only shows the event's partition moved
    past `offset` wakes the waiter to read. Notifications can be lost (a reconnect):
    waiters still read after a short timeout, so a lost one costs time, never the
    answer."""

    def __init__(self, event_id: str, partition: int, *, live: bool) -> None:
        self.event_id = event_id
        self.partition = partition
        self.live = live  # the store was receiving notifications when this was made
        self.offset: int | None = None  # known once the append returned
        self.verdict: str | None = None  # the verdict document, as the store holds it
        self._woken = asyncio.Event()

    def notify(self, verdict: str | None = None) -> None:
        if verdict is not None:
            self.verdict = verdict
        self._woken.set()

    def moved(self, applied: int) -> bool:
        """Whether a partition position of `applied` may include the event."""
        return self.offset is None or applied > self.offset

    async def wait(self, timeout: float) -> None:
        """Until notified (or `timeout`); a notification during the caller's next read
        wakes the next wait at once."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._woken.wait(), timeout)
        self._woken.clear()


class ProjectionStore(abc.ABC):
    async def start(self) -> None:  # noqa: B027 - optional hook
        pass

    async def stop(self) -> None:  # noqa: B027 - optional hook
        pass

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # --- generations ------------------------------------------------------

    @abc.abstractmethod
    async def current_generation(self) -> int:
        """The generation readers use; creates generation 1 on an empty store."""

    @abc.abstractmethod
    async def new_generation(self) -> int:
        """Allocate an empty generation that no reader sees yet."""

    @abc.abstractmethod
    async def switch(self, generation: int, *, not_behind: int | None = None) -> bool:
        """Make `generation` current, atomically.

        With `not_behind`, switch only if `generation`'s applied positions are
        at or past those of generation `not_behind` on every partition; returns
        False (and changes nothing) otherwise.
        """

    @abc.abstractmethod
    async def drop_generation(self, generation: int) -> None: ...

    @abc.abstractmethod
    async def generations(self) -> list[int]: ...

    # --- writing ----------------------------------------------------------

    @abc.abstractmethod
    async def applied(self, generation: int) -> dict[int, int]:
        """Per partition, the next offset to apply (absent = 0)."""

    @abc.abstractmethod
    async def apply(self, generation: int, changes: Changes,
                    expected: Mapping[int, int]) -> None:
        """Write effects and positions atomically; raise StalePosition on a lost race.

        `expected` holds, for every partition in `changes.positions`, the
        applied position the writer started from.
        """

    # --- reading ----------------------------------------------------------

    @abc.abstractmethod
    async def hget(self, key: str, field: str, *, generation: int | None = None) -> str | None:
        """Read one field from the current (or a given) generation."""

    @abc.abstractmethod
    async def hgetall(self, key: str, *, generation: int | None = None) -> dict[str, str]: ...

    async def hget_many(self, fields: Sequence[tuple[str, str]]) -> list[str | None]:
        """Several (key, field) reads of the current generation, as of one instant.

        One round trip where the store is remote: a command's verdict wait and its
        precondition reads are on the path of every command's latency."""
        gen = await self.current_generation()
        return [await self.hget(key, name, generation=gen) for key, name in fields]

    @abc.abstractmethod
    async def dump(self, generation: int) -> dict[str, dict[str, str]]:
        """Every key of a generation (for digests and verification)."""

    async def digest(self, generation: int) -> str:
        return digest_of(await self.dump(generation))

    async def wait_for_change(self, timeout: float) -> None:
        """Return when the current generation may have changed, or after `timeout`."""
        await asyncio.sleep(timeout)

    def watch_verdict(self, event_id: str, partition: int) -> VerdictWatch | None:
        """A watch its notifications resolve, or None where they carry no verdicts
        (the caller then reads after every `wait_for_change`)."""
        return None

    def unwatch_verdict(self, watch: VerdictWatch) -> None:  # noqa: B027 - optional hook
        pass


def digest_of(dump: Mapping[str, Mapping[str, str]]) -> str:
    """Order-independent content digest of a generation."""
    h = hashlib.sha256()
    for key in sorted(dump):
        fields = dump[key]
        if not fields:
            continue
        h.update(key.encode())
        h.update(b"\x00")
        for name in sorted(fields):
            h.update(name.encode())
            h.update(b"\x01")
            h.update(fields[name].encode())
            h.update(b"\x02")
        h.update(b"\x03")
    return h.hexdigest()


def first_differences(a: Mapping[str, Mapping[str, str]], b: Mapping[str, Mapping[str, str]],
                      limit: int = 10) -> list[str]:
    """Human-readable first differing keys/fields between two dumps."""
    out: list[str] = []
    for key in sorted(set(a) | set(b)):
        fa, fb = a.get(key, {}), b.get(key, {})
        if fa == fb:
            continue
        for name in sorted(set(fa) | set(fb)):
            va, vb = fa.get(name), fb.get(name)
            if va != vb:
                out.append(f"{key} [{name}]: live={_short(va)} replay={_short(vb)}")
                if len(out) >= limit:
                    return out
    return out


def _short(value: str | None, n: int = 80) -> str:
    if value is None:
        return "<missing>"
    return value if len(value) <= n else value[:n] + "…"


def merged_positions(changes: Changes) -> Iterable[tuple[str, str]]:
    for partition, offset in sorted(changes.positions.items()):
        yield str(partition), str(offset)


__all__ = [
    "GenerationMissing",
    "ProjectionStore",
    "StalePosition",
    "VerdictWatch",
    "digest_of",
    "first_differences",
    "keys",
]
