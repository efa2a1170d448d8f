"""Which workers someone tails: tail consumers only where they are wanted.

A tail consumer makes workerd build a trace of every invocation and call the
gateway's `WdlTail` after it, which costs the gateway a large share of its
throughput (docs/dataplane.md, "Benchmark"). So a version is loaded with
`tails` only while a live tail subscription exists for its worker. The data
services, which hold the subscriptions (services/tail/hub.py), report the
full set of tailed (namespace, worker) here - on every change, and again
periodically so a restarted state service learns it again; a source that
stops reporting is forgotten after `ttl_s`.

A change is recorded in the route view's journal under a new epoch (gateways
drop the namespace's cached routes on their next round, or by a push to lease
holders, the same path a promote takes), and the route answer of a tailed
worker carries `tail: true` and a loader id with `TAIL_SUFFIX`: a tailed
version is a different isolate, and one no route points at any more counts as
stale for recycling. `replace()` returns only once lease holders have the
change, so a subscription the data service reports `connected` after it sees
every request that arrives later (read-your-writes, as for a promote).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable

from services.state.view import RouteView

TAIL_SUFFIX = ":t"
MAX_TAILED = 10_000
Pair = tuple[str, str]


class TailedSet:
    def __init__(self, view: RouteView, propagate: Callable[[], Awaitable[int]] | None = None,
                 *, ttl_s: float = 30.0) -> None:
        self.view = view
        self.propagate = propagate
        self.ttl_s = ttl_s
        self._sources: dict[str, tuple[frozenset[Pair], float]] = {}
        self._tailed: frozenset[Pair] = frozenset()

    def tailed(self, namespace: str, worker: str) -> bool:
        return bool(self._tailed) and (namespace, worker) in self._tailed

    def loader_id(self, namespace: str, worker: str, base: str) -> str:
        """The id a route to (namespace, worker) names, given its untailed id."""
        return base + TAIL_SUFFIX if self.tailed(namespace, worker) else base

    @property
    def pairs(self) -> frozenset[Pair]:
        return self._tailed

    async def replace(self, source: str, pairs: Iterable[Pair]) -> int:
        """`source` (a data service) now tails exactly `pairs`; the view's epoch once
        every gateway that may serve from a lease has the change."""
        self._sources[source] = (frozenset(pairs), time.monotonic() + self.ttl_s)
        return await self._apply()

    async def expire(self) -> None:
        now = time.monotonic()
        gone = [s for s, (_, until) in self._sources.items() if until <= now]
        for source in gone:
            del self._sources[source]
        if gone:
            await self._apply()

    async def _apply(self) -> int:
        new: set[Pair] = set()
        for pairs, _ in self._sources.values():
            new |= pairs
        tailed = frozenset(new)
        changed = {ns for ns, _ in tailed ^ self._tailed}
        # Same step (no await): a route answer never pairs the new set with an epoch
        # that a gateway could keep past the change.
        self._tailed = tailed
        self.view.touch(changed)
        if self.propagate is not None:
            return await self.propagate()
        return self.view.epoch


def parse_pairs(raw: object) -> list[Pair] | None:
    """`[[namespace, worker], ...]` from a report, or None when it is malformed."""
    if not isinstance(raw, list) or len(raw) > MAX_TAILED:
        return None
    out: list[Pair] = []
    for item in raw:
        if (not isinstance(item, list) or len(item) != 2
                or not all(isinstance(x, str) and 0 < len(x) <= 256 for x in item)):
            return None
        out.append((item[0], item[1]))
    return out
