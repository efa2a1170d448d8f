"""Which tenant hung or crashed a workerd process: markers, probation, strikes.

workerd cannot tell (docs/containment.md), so the gateway tells us *before*
the fact, at no extra round trip: every barrier round it sends (`/sync`)
carries the targets of the requests waiting for that round ("marks") and of
the requests past the barrier that have not finished ("admitted"). When a
process hangs or dies, the culprit is among the last round's marks and
admitted targets of that process:

- exactly one suspect: it gets a strike;
- several: each is put **on probation**. The gateway runs a probation
  target's requests one at a time per process and announces each with an
  awaited `/enter` (and its end with the next round), so the next incident
  while one is open names it exactly: that one gets the strike.

Scheduled invocations are always announced with `/enter` (they are rare).
After `strikes` strikes within `window_s`, the version is quarantined: an
event on the log, kept by every rebuild. Strikes and probation live in this
process only (best effort: a restarted state service starts counting again).
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

    @property
    def worker_key(self) -> tuple[str, str]:
        return self.namespace, self.worker

    def label(self) -> str:
        return f"{self.namespace}/{self.worker}" + (f"@{self.version}" if self.version else "")


@dataclass(frozen=True)
class IncidentPolicy:
    strikes: int = 3          # strikes within window_s that quarantine a version
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
    blamed: tuple[Target, ...]       # got a strike
    probation: tuple[Target, ...]    # put on probation
    quarantine: tuple[tuple[Target, int], ...]  # (target, strikes) that reached the bound
    precise: bool                    # blamed from an announced entry

    def to_json(self) -> dict[str, Any]:
        return {"instance": self.instance, "kind": self.kind, "precise": self.precise,
                "blamed": [t.label() for t in self.blamed],
                "probation": [t.label() for t in self.probation],
                "quarantine": [t.label() for t, _ in self.quarantine]}


def parse_targets(raw: object, limit: int) -> tuple[list[Target], bool]:
    """[[ns, worker, version|null], ...] from the gateway; malformed entries are skipped."""
    out: list[Target] = []
    if not isinstance(raw, list):
        return out, False
    for item in raw[:limit]:
        if (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                and isinstance(item[1], str) and (item[2] is None or isinstance(item[2], str))
                and 0 < len(item[0]) <= 128 and 0 < len(item[1]) <= 128):
            out.append(Target(item[0], item[1], item[2] or None))
    return out, len(raw) > limit


class IncidentDesk:
    def __init__(self, policy: IncidentPolicy | None = None, *,
                 clock: Callable[[], float] = time.monotonic, max_instances: int = 256) -> None:
        self.policy = policy or IncidentPolicy()
        self.clock = clock
        self.max_instances = max_instances
        self._trails: OrderedDict[str, _InstanceTrail] = OrderedDict()
        self._probation: dict[tuple[str, str], float] = {}  # worker -> until
        self._strikes: dict[Target, list[float]] = {}
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

    def on_probation(self, namespace: str, worker: str) -> bool:
        until = self._probation.get((namespace, worker))
        return until is not None and until > self.clock()

    def expire(self) -> set[str]:
        """Namespaces whose probation just ended (their cached routes must be refreshed)."""
        now = self.clock()
        ended = [key for key, until in self._probation.items() if until <= now]
        for key in ended:
            del self._probation[key]
        return {ns for ns, _ in ended}

    # --- incidents ------------------------------------------------------------------

    async def incident(self, instance: str, kind: str,
                       resolve: Callable[[Target], Awaitable[Target]]) -> Finding:
        """Conclude an incident of `instance`; `resolve` fills in the version of a target
        that was marked before its route was known (the worker's active version)."""
        trail = self._trails.pop(instance, None) or _InstanceTrail()
        blamed: list[Target] = []
        probation: list[Target] = []
        precise = bool(trail.open)
        if trail.open:
            blamed = list(dict.fromkeys(trail.open.values()))
        else:
            suspects: dict[tuple[str, str], Target] = {}
            truncated = False
            if trail.rounds:
                last = trail.rounds[-1]
                truncated = last.truncated
                for t in sorted(last.targets, key=lambda t: (t.version is None, t.label())):
                    # One suspect per worker; prefer an entry that names its version.
                    suspects.setdefault(t.worker_key, t)
            if len(suspects) == 1 and not truncated:
                blamed = list(suspects.values())
            else:
                probation = list(suspects.values())
        blamed = list(dict.fromkeys([await resolve(t) for t in blamed]))
        now = self.clock()
        for t in probation:
            self._probation[t.worker_key] = now + self.policy.probation_s
        quarantine: list[tuple[Target, int]] = []
        for t in blamed:
            hits = [at for at in self._strikes.get(t, []) if at > now - self.policy.window_s]
            hits.append(now)
            self._strikes[t] = hits
            if len(hits) >= self.policy.strikes:
                quarantine.append((t, len(hits)))
        finding = Finding(instance, kind, tuple(blamed), tuple(probation), tuple(quarantine),
                          precise)
        self.findings.append(finding)
        return finding

    def settled(self, target: Target) -> None:
        """The target was quarantined: start over if it is ever lifted."""
        self._strikes.pop(target, None)
        self._probation.pop(target.worker_key, None)

    def strikes(self) -> dict[str, int]:
        now = self.clock()
        return {t.label(): len([a for a in hits if a > now - self.policy.window_s])
                for t, hits in self._strikes.items()}

    def probation(self) -> list[str]:
        now = self.clock()
        return sorted(f"{ns}/{w}" for (ns, w), until in self._probation.items() if until > now)
