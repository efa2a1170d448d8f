"""The embedded projection store: in-process, rebuilt from the log at start."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from projections import keys
from projections.changes import Changes
from projections.store import GenerationMissing, ProjectionStore, StalePosition

Hashes = dict[str, dict[str, str]]


class MemoryProjectionStore(ProjectionStore):
    def __init__(self) -> None:
        self._generations: dict[int, Hashes] = {}
        self._current = 0
        self._next = 1
        self._changed = asyncio.Event()

    async def current_generation(self) -> int:
        if self._current == 0:
            self._current = await self.new_generation()
        return self._current

    async def new_generation(self) -> int:
        gen = self._next
        self._next += 1
        self._generations[gen] = {}
        return gen

    def _gen(self, generation: int) -> Hashes:
        try:
            return self._generations[generation]
        except KeyError:
            raise GenerationMissing(f"generation {generation} does not exist") from None

    async def switch(self, generation: int, *, not_behind: int | None = None) -> bool:
        target = self._gen(generation)
        if not_behind is not None:
            mine = _positions(target)
            theirs = _positions(self._gen(not_behind))
            if any(mine.get(p, 0) < off for p, off in theirs.items()):
                return False
        self._current = generation
        self._notify()
        return True

    async def drop_generation(self, generation: int) -> None:
        if generation == self._current:
            raise ValueError("cannot drop the current generation")
        self._generations.pop(generation, None)

    async def generations(self) -> list[int]:
        return sorted(self._generations)

    async def applied(self, generation: int) -> dict[int, int]:
        return _positions(self._gen(generation))

    async def apply(self, generation: int, changes: Changes,
                    expected: Mapping[int, int]) -> None:
        data = self._gen(generation)
        stored = _positions(data)
        for partition in changes.positions:
            if stored.get(partition, 0) != expected.get(partition, 0):
                raise StalePosition(
                    f"partition {partition} is at {stored.get(partition, 0)}, "
                    f"writer expected {expected.get(partition, 0)}")
        for key in changes.dropped:
            data.pop(key, None)
        for key, fields in changes.fields.items():
            target = data.setdefault(key, {})
            for name, value in fields.items():
                if value is None:
                    target.pop(name, None)
                else:
                    target[name] = value
            if not target:
                del data[key]
        if changes.positions:
            applied = data.setdefault(keys.APPLIED, {})
            for partition, offset in changes.positions.items():
                applied[str(partition)] = str(offset)
        if generation == self._current:
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def hget(self, key: str, field: str, *, generation: int | None = None) -> str | None:
        gen = generation if generation is not None else await self.current_generation()
        return self._gen(gen).get(key, {}).get(field)

    async def hgetall(self, key: str, *, generation: int | None = None) -> dict[str, str]:
        gen = generation if generation is not None else await self.current_generation()
        return dict(self._gen(gen).get(key, {}))

    async def dump(self, generation: int) -> dict[str, dict[str, str]]:
        return {k: dict(v) for k, v in self._gen(generation).items() if v}

    async def wait_for_change(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)


def _positions(data: Hashes) -> dict[int, int]:
    return {int(p): int(o) for p, o in data.get(keys.APPLIED, {}).items()}
