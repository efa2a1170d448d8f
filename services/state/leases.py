"""Freshness leases of gateway processes, and the pushes that keep them honest.

Without a lease every gateway request waits for a barrier round (a `/sync` that
started after it arrived). With one, a gateway process serves from its route
cache without asking, and the write path pays instead: before the control API
acknowledges a command it calls `propagate()`, which brings the route view up
to the projection's applied position and **pushes** what changed to every
process holding a live lease (`POST /__wdl/sync` on the process's private
socket), waiting until each one confirmed it or its lease ran out. So a request
that arrives after an acknowledgement still never sees routing state older
than that write (docs/dataplane.md, "Read-your-writes").

Why it is safe:
- A lease is granted by a round's answer and registered here in the same step
  (no await) that computed the answer's epoch; `propagate()` snapshots the
  holders in the same step that read its own epoch. So a holder either got an
  answer at least as new as the write, or is in the snapshot and gets a push.
- The gateway counts its lease from the moment it *sent* the round, this side
  from when it answered: the gateway's lease always ends first.
- A push names the epoch it is relative to (`since`); a process that is not
  exactly there drops its lease instead of applying it, and a round answer
  older than a push it saw never grants a lease (gateway.js).
- A process that cannot be reached (stuck, gone) is waited out: its lease ends
  at most `lease_ms` later. A restarted state service knows no holders, so its
  first `lease_ms` of propagations wait that long: leases granted by the
  previous boot are over by then.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import httpx
import msgspec

from services.state.view import RouteView

log = logging.getLogger("wdl.state.leases")
_encode = msgspec.json.Encoder()
MAX_HOLDERS = 256


@dataclass
class Holder:
    instance: str
    address: str  # host:port of the process's private socket
    epoch: int  # the newest epoch the process is known to have applied
    expires: float  # time.monotonic() when its lease is over at the latest


class GatewayLeases:
    """Leases of `lease_ms` (0: none, every request waits for a round)."""

    def __init__(self, view: RouteView, *, lease_ms: int, internal_token: str,
                 push_timeout_s: float = 1.0) -> None:
        self.view = view
        self.lease_ms = lease_ms
        self.internal_token = internal_token
        self.push_timeout_s = push_timeout_s
        self._holders: dict[str, Holder] = {}
        self._booted = time.monotonic()
        self._client: httpx.AsyncClient | None = None
        self.pushes = 0
        self.waited_out = 0

    async def start(self) -> None:
        self._booted = time.monotonic()
        self._client = httpx.AsyncClient(timeout=self.push_timeout_s, trust_env=False)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def grant(self, instance: str | None, address: str | None, epoch: int) -> int:
        """Called in the same step that computes a round's answer: the lease (ms) the
        answer carries; 0 when leases are off or the round did not ask for one.

        `epoch` is what the process *proved* it has (the epoch it sent with the round,
        -1 for another boot), not the answer's: an answer can be lost on the way, so
        only the next round or a confirmed push moves it."""
        if self.lease_ms <= 0 or not instance or not address or self._client is None:
            return 0
        holder = self._holders.get(instance)
        expires = time.monotonic() + self.lease_ms / 1000
        if holder is None:
            if len(self._holders) >= MAX_HOLDERS:
                self._expire()
                if len(self._holders) >= MAX_HOLDERS:
                    return 0
            self._holders[instance] = Holder(instance, address, epoch, expires)
        else:
            holder.address, holder.epoch, holder.expires = address, epoch, expires
        return self.lease_ms

    def _expire(self) -> None:
        now = time.monotonic()
        for name in [n for n, h in self._holders.items() if h.expires <= now]:
            del self._holders[name]

    def holders(self) -> list[Holder]:
        self._expire()
        return list(self._holders.values())

    async def propagate(self) -> int:
        """Return once every process that may serve from a lease has what the projection
        had applied when this was called (or its lease is over). The view's epoch."""
        epoch = await self.view.sync()
        if self.lease_ms <= 0:
            return epoch
        now = time.monotonic()
        # Same step as the sync's epoch (no await in between): see the module docstring.
        epoch = self.view.epoch
        stale = [h for h in self.holders() if h.epoch < epoch]
        young = self._booted + self.lease_ms / 1000 - now
        waits = [self._push(h, epoch) for h in stale]
        if young > 0:
            waits.append(asyncio.sleep(young))
        if waits:
            await asyncio.gather(*waits)
        return epoch

    async def _push(self, holder: Holder, epoch: int) -> None:
        client = self._client
        ch = self.view.changes_since(holder.epoch, self.view.boot)
        body = _encode.encode({"boot": self.view.boot, "since": holder.epoch,
                               "epoch": ch.epoch, "flush": ch.flush,
                               "namespaces": sorted(ch.namespaces), "hosts": ch.hosts})
        left = holder.expires - time.monotonic()
        if left <= 0:
            return
        self.pushes += 1
        try:
            assert client is not None
            response = await client.post(
                f"http://{holder.address}/__wdl/sync", content=body,
                headers={"content-type": "application/json",
                         "x-wdl-internal-token": self.internal_token},
                timeout=min(self.push_timeout_s, left))
            if response.status_code == 200:
                if self._holders.get(holder.instance) is holder:
                    holder.epoch = max(holder.epoch, ch.epoch)
                return
            log.warning("gateway %s refused a push: %s", holder.instance, response.status_code)
        except (httpx.HTTPError, AssertionError) as exc:
            log.warning("gateway %s did not take a push: %s", holder.instance, exc)
        # Not confirmed: wait its lease out, then forget it until it asks again.
        # A round it sends meanwhile (epoch >= this one) ends the wait early.
        self.waited_out += 1
        while holder.epoch < epoch:
            left = holder.expires - time.monotonic()
            if left <= 0:
                if self._holders.get(holder.instance) is holder:
                    del self._holders[holder.instance]
                return
            await asyncio.sleep(min(left, 0.05))
