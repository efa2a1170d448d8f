"""Which DO host serves an object: one lease per shard of a class.

Scope `do:<namespace>/<script>/<class>/<shard>` (the class lower-cased plus a digest
of its exact name: lease scopes are lower-case). Acquire, renew and (after the
holder's lease ran out) the next acquire are events with generations through
LeaseClient; the log is the arbiter (services/leases.py). A host serves an object
only while it holds its shard's lease with at least `margin` of it left by its own
clock, and renews before that; otherwise it asks the log again, so a host that was
paused (SIGSTOP) past its lease finds, on its next call, that the lease moved on
(its renew is refused) and refuses the call (fail closed). docs/durable-objects.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from services.leases import LeaseClient, LeaseLost
from services.scheduler.clock import Clock

log = logging.getLogger("wdl.objects")

SHARDS = 4
_UNSAFE = re.compile(r"[^a-z0-9_]")


def shard_scope(namespace: str, script: str, class_name: str, shard: int) -> str:
    digest = hashlib.sha256(class_name.encode()).hexdigest()[:8]
    cls = _UNSAFE.sub("_", class_name.lower())[:60]
    return f"do:{namespace}/{script}/{cls}-{digest}/{shard % SHARDS}"


def shard_of(object_id: str) -> int:
    return int(object_id[:2], 16) % SHARDS


def holder_name(private_address: str, pid: int) -> str:
    return f"objects:{private_address}:{pid}"


def holder_address(holder: str) -> str | None:
    """`objects:<host:port>:<pid>` -> host:port (the holder's private socket)."""
    if not holder.startswith("objects:") or holder.count(":") < 3:
        return None
    return holder[len("objects:"):holder.rindex(":")]


@dataclass
class Held:
    generation: int
    expires_at: int


@dataclass(frozen=True)
class Verdict:
    mine: bool
    generation: int = 0
    address: str | None = None  # the owner's private address when it is another host
    reason: str = ""
    valid_ms: int = 0  # how long "mine" may be relied on without asking again


class Ownership:
    def __init__(self, leases: LeaseClient, clock: Clock, holder: str, *, ttl_ms: int,
                 alive: Callable[[], bool] = lambda: True) -> None:
        self.leases = leases
        # Whether this host's workerd still runs: a supervisor whose workerd died must
        # let its leases lapse, or its shards would stay owned by nobody that serves.
        self.alive = alive
        self.clock = clock
        self.holder = holder
        self.ttl_ms = ttl_ms
        self.margin_ms = ttl_ms // 3
        self.held: dict[str, Held] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._renewer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._renewer = asyncio.create_task(self._renew_loop())

    async def stop(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        for scope, h in list(self.held.items()):
            with contextlib.suppress(Exception):
                await self.leases.release(scope, self.holder, h.generation)
        self.held.clear()

    async def owner(self, scope: str) -> Verdict:
        lock = self._locks.setdefault(scope, asyncio.Lock())
        async with lock:
            return await self._owner(scope)

    async def _owner(self, scope: str) -> Verdict:
        now = self.clock.now_ms()
        held = self.held.get(scope)
        if held is not None and held.expires_at - now > self.margin_ms:
            return Verdict(True, held.generation,
                           valid_ms=held.expires_at - now - self.margin_ms)
        if held is not None:
            try:
                await self.leases.renew(scope, self.holder, held.generation, self.ttl_ms)
                held.expires_at = now + self.ttl_ms
                return Verdict(True, held.generation)
            except LeaseLost:
                log.warning("objects: lease %s (generation %d) was taken over", scope,
                            held.generation)
                del self.held[scope]
        view = await self.leases.view(scope)
        if view.free(now):
            gen = await self.leases.acquire(scope, self.holder, self.ttl_ms)
            if gen is not None:
                self.held[scope] = Held(gen, now + self.ttl_ms)
                return Verdict(True, gen)
            view = await self.leases.view(scope)
        if view.holder == self.holder and view.expires_at > now:
            # Ours in the log but not in memory (a restart with the same holder name).
            return Verdict(False, view.generation, None, "lease held by this holder's past")
        address = holder_address(view.holder or "")
        return Verdict(False, view.generation, address,
                       f"shard owned by {view.holder} (generation {view.generation})")

    async def _renew_loop(self) -> None:
        while True:
            await self.clock.sleep_ms(self.ttl_ms / 3)
            if not self.alive():
                log.error("objects: workerd is gone; letting %d shard leases lapse",
                          len(self.held))
                self.held.clear()
                continue
            for scope, held in list(self.held.items()):
                try:
                    await self.leases.renew(scope, self.holder, held.generation, self.ttl_ms)
                    held.expires_at = self.clock.now_ms() + self.ttl_ms
                except LeaseLost:
                    self.held.pop(scope, None)
                except Exception:  # the next call asks the log again
                    log.exception("objects: renewing %s failed", scope)
