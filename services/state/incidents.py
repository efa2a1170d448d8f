"""Which namespace hung or crashed a workerd process: markers, probation, the suspect.

workerd cannot tell (docs/containment.md), so the gateway tells us *before*
the fact, at no extra round trip: every barrier round it sends (`/sync`)
carries the targets of the requests waiting for that round ("marks") and of
the requests past the barrier that have not finished ("admitted"), each with
whether it runs *gated* (see below). When a process hangs or dies, the culprit
is one of

- its announced entries that have not ended (`/enter`, below), or
- an ungated target of its last round.

Gated targets are left out: a request of a namespace on probation runs tenant
code only while it holds its process's probation gate (one at a time per
process), and it announces itself with an awaited `/enter` before it does. The
gateway decides gated-or-not when it marks a request and keeps to it, so a
target reported gated can only have run as an announced entry.

Blame is by **namespace**: a tenant that deploys a fresh version before every
spin is the same suspect each time. The candidates name

- one namespace (and the round was not truncated): that namespace gets a strike
  (the state service appends `namespace.struck`; the fold holds the namespace
  back after K strikes within the window) and stays on probation, and the
  namespaces that were only put on probation *alongside* it are released: the
  incidents they shared are explained;
- several: each goes **on probation** (gated from then on), nobody is struck.
  The next incident while they are gated names the culprit exactly.

Probation lives in this process only (it protects precision, not availability:
losing it costs one more ambiguous incident). Strikes and holds are events.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Target:
    namespace: str
    worker: str
    version: str | None = None
    # Ran (or will run) only behind its process's probation gate: it reached tenant code
    # only as an announced entry. Not part of the identity.
    gated: bool = field(default=False, compare=False)

    @property
    def worker_key(self) -> tuple[str, str]:
        return self.namespace, self.worker

    def label(self) -> str:
        return f"{self.namespace}/{self.worker}" + (f"@{self.version}" if self.version else "")


@dataclass(frozen=True)
class IncidentPolicy:
    strikes: int = 3          # strikes within window_s that hold a namespace back
    window_s: float = 600.0
    probation_s: float = 300.0
    max_targets: int = 256    # per round; more are dropped (the round counts as truncated)


@dataclass(frozen=True)
class _Round:
    at: float
    targets: frozenset[Target]
    truncated: bool


@dataclass
class _InstanceTrail:
    rounds: deque[_Round] = field(default_factory=lambda: deque(maxlen=2))
    open: dict[str, Target] = field(default_factory=dict)  # announced, not yet done


@dataclass(frozen=True)
class Finding:
    """What one incident concluded."""

    instance: str
    kind: str
    blamed: tuple[Target, ...]       # the one namespace that gets a strike (or none)
    probation: tuple[str, ...]       # namespaces put on probation
    released: tuple[str, ...]        # namespaces whose probation the strike explained
    precise: bool                    # blamed from an announced entry

    def to_json(self) -> dict[str, Any]:
        return {"instance": self.instance, "kind": self.kind, "precise": self.precise,
                "blamed": [t.label() for t in self.blamed],
                "probation": list(self.probation), "released": list(self.released)}


def parse_targets(raw: object, limit: int) -> tuple[list[Target], bool]:
    """[[ns, worker, version|null, gated?], ...] from the gateway; malformed entries are
    skipped."""
    out: list[Target] = []
    if not isinstance(raw, list):
        return out, False
    for item in raw[:limit]:
        if (isinstance(item, list) and len(item) in (3, 4) and isinstance(item[0], str)
                and isinstance(item[1], str) and (item[2] is None or isinstance(item[2], str))
                and 0 < len(item[0]) <= 128 and 0 < len(item[1]) <= 128):
            gated = len(item) == 4 and item[3] is True
            out.append(Target(item[0], item[1], item[2] or None, gated))
    return out, len(raw) > limit


class IncidentDesk:
    def __init__(self, policy: IncidentPolicy | None = None, *,
                 clock: Callable[[], float] = time.monotonic, max_instances: int = 256) -> None:
        self.policy = policy or IncidentPolicy()
        self.clock = clock
        self.max_instances = max_instances
        self._trails: OrderedDict[str, _InstanceTrail] = OrderedDict()
        self._probation: dict[str, float] = {}  # namespace -> until
        # namespace -> the namespaces it was put on probation with (one incident's suspects)
        self._together: dict[str, set[str]] = {}
        self.findings: deque[Finding] = deque(maxlen=100)

    def _trail(self, instance: str) -> _InstanceTrail:
        trail = self._trails.get(instance)
        if trail is None:
            trail = self._trails[instance] = _InstanceTrail()
            while len(self._trails) > self.max_instances:
                self._trails.popitem(last=False)
        self._trails.move_to_end(instance)
        return trail

    # --- what the gateway tells us ------------------------------------------------

    def observe(self, instance: str, targets: Iterable[Target], *, truncated: bool = False,
                done: Iterable[str] = ()) -> None:
        """One barrier round of `instance`: who is waiting or inside, which entries ended."""
        trail = self._trail(instance)
        for token in done:
            trail.open.pop(token, None)
        trail.rounds.append(_Round(self.clock(), frozenset(targets), truncated))

    def enter(self, instance: str, token: str, target: Target, done: Iterable[str] = ()) -> None:
        trail = self._trail(instance)
        for ended in done:
            trail.open.pop(ended, None)
        trail.open[token] = target
        while len(trail.open) > 64:  # tokens whose end we never heard of
            trail.open.pop(next(iter(trail.open)))

    def on_probation(self, namespace: str) -> bool:
        until = self._probation.get(namespace)
        return until is not None and until > self.clock()

    def expire(self) -> set[str]:
        """Namespaces whose probation just ended (their cached routes must be refreshed)."""
        now = self.clock()
        ended = {ns for ns, until in self._probation.items() if until <= now}
        for ns in ended:
            self._release(ns)
        return ended

    def _release(self, namespace: str) -> None:
        self._probation.pop(namespace, None)
        for other in self._together.pop(namespace, set()):
            self._together.get(other, set()).discard(namespace)

    # --- incidents ------------------------------------------------------------------

    def _suspects(self, trail: _InstanceTrail) -> tuple[dict[str, list[Target]], bool]:
        """Candidates by namespace, and whether they may be incomplete."""
        by_ns: dict[str, list[Target]] = {}
        for target in trail.open.values():
            by_ns.setdefault(target.namespace, []).append(target)
        truncated = False
        if trail.rounds:
            last = trail.rounds[-1]
            truncated = last.truncated
            for target in last.targets:
                if not target.gated:
                    by_ns.setdefault(target.namespace, []).append(target)
        elif not trail.open:
            truncated = True  # nothing heard from this process: anyone could have done it
        return by_ns, truncated

    async def incident(self, instance: str, kind: str,
                       resolve: Callable[[Target], Awaitable[Target]]) -> Finding:
        """Conclude an incident of `instance`; `resolve` fills in the version of a target
        that was marked before its route was known (the worker's active version)."""
        trail = self._trails.pop(instance, None) or _InstanceTrail()
        suspects, truncated = self._suspects(trail)
        now = self.clock()
        blamed: tuple[Target, ...] = ()
        probation: tuple[str, ...] = ()
        released: tuple[str, ...] = ()
        precise = False
        if len(suspects) == 1 and not truncated:
            (namespace, targets), = suspects.items()
            announced = [t for t in trail.open.values() if t.namespace == namespace]
            precise = bool(announced)
            # Prefer what was announced, then an entry that names its version.
            pick = sorted(announced or targets, key=lambda t: (t.version is None, t.label()))[0]
            blamed = (await resolve(pick),)
            released = tuple(sorted(self._together.get(namespace, set())))
            for other in released:
                self._release(other)
            self._together.pop(namespace, None)
            self._probation[namespace] = now + self.policy.probation_s
        elif suspects:
            probation = tuple(sorted(suspects))
            for namespace in probation:
                self._probation[namespace] = now + self.policy.probation_s
                self._together.setdefault(namespace, set()).update(
                    ns for ns in probation if ns != namespace)
        finding = Finding(instance, kind, blamed, probation, released, precise)
        self.findings.append(finding)
        return finding

    def probation(self) -> list[str]:
        now = self.clock()
        return sorted(ns for ns, until in self._probation.items() if until > now)
