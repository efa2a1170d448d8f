"""The DO host's watchdog: one tenant's object must not stop every namespace's objects.

Every namespace's Durable Objects run in the host's one workerd process, and workerd
enforces no CPU limit: an object method that spins (`while (true) {}`) stops them all.
So, like the gateway's supervisor (docs/containment.md), the host's supervisor probes
its workerd over the private socket every `probe_interval`; a process that neither
answered nor made an I/O syscall for `hang_timeout` is SIGKILLed, and one that exited
is replaced too: a new workerd on the same sockets (the shared public one and the
private one its shard leases name), retried with backoff for as long as it takes.

Blame: workerd cannot say which object spun, and the host sees no barrier rounds.
After an incident the replacement runs in **careful mode** for `probation_s`
(workerd/objects/careful.js): every call into tenant code takes the host's gate and
announces its namespace (`POST /enter`) before it runs. The next incident's suspects
are the announced entries that never ended: exactly one namespace among them gets a
strike (`namespace.struck`, the same events and hold as the gateway's,
projections/fold/containment.py); several, or an incident outside careful mode,
strike nobody. A hold ends the namespace's requests at the gateway, so its objects get
no more calls; its alarms fail on the route lookup (retried with workerd's backoff).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import httpx

from services.dataplane.gateway import WatchdogPolicy
from services.dataplane.workerd_process import WorkerdProcess, main_thread_syscalls
from services.state.incidents import IncidentPolicy, Target
from services.state.quarantine import Striker

log = logging.getLogger("wdl.objects.watchdog")
MAX_OPEN = 256


@dataclass
class Announcements:
    """Entries objects.js announced and has not said ended (careful mode only)."""

    open: dict[str, tuple[str, str]] = field(default_factory=dict)  # token -> (ns, script)

    def enter(self, token: str, namespace: str, script: str, done: Iterable[str]) -> None:
        for ended in done:
            self.open.pop(ended, None)
        self.open[token] = (namespace, script)
        while len(self.open) > MAX_OPEN:  # tokens whose end we never heard of
            self.open.pop(next(iter(self.open)))

    def suspects(self) -> dict[str, str]:
        """namespace -> a script of it, among the open entries."""
        return {ns: script for ns, script in self.open.values()}

    def clear(self) -> None:
        self.open.clear()


@dataclass(frozen=True)
class HostIncident:
    kind: str  # hang | crash
    detail: str
    careful: bool  # the host was in careful mode: its entries were announced
    blamed: str | None  # the namespace struck, if any
    at: float  # time.time()


class ObjectsWatchdog:
    """Watches the host's workerd through `current()` and replaces it with `spawn(careful
    until, ms since the epoch)`; `striker` (None without a log) appends the strikes."""

    def __init__(self, current: Callable[[], WorkerdProcess | None],
                 spawn: Callable[[int], Awaitable[None]], probe_url: str, token: str, *,
                 policy: WatchdogPolicy | None = None,
                 incidents: IncidentPolicy | None = None,
                 striker: Striker | None = None) -> None:
        self.current = current
        self.spawn = spawn
        self.probe_url = probe_url
        self.token = token
        self.policy = policy or WatchdogPolicy()
        self.incidents_policy = incidents or IncidentPolicy()
        self.striker = striker
        self.announced = Announcements()
        self.incidents: list[HostIncident] = []
        self.careful_until_ms = 0
        self._last_ok = time.monotonic()
        self._progress = time.monotonic()
        self._io = -1
        self._client: httpx.AsyncClient | None = None
        self._probe: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """The watch loop: until cancelled."""
        self._client = httpx.AsyncClient(timeout=self.policy.hang_timeout)
        try:
            self._last_ok = self._progress = time.monotonic()
            while True:
                await asyncio.sleep(self.policy.probe_interval)
                await self._tick()
        finally:
            if self._probe is not None:
                self._probe.cancel()
            await self._client.aclose()
            self._client = None

    async def _tick(self) -> None:
        process = self.current()
        if process is None:
            return
        now = time.monotonic()
        io = main_thread_syscalls(process.pid) if process.pid is not None else None
        if io is not None and io != self._io:
            if self._io >= 0:
                self._progress = now
            self._io = io
        if not process.running:
            await self._replace(process, "crash",
                                f"workerd exited with status {process.returncode}")
        elif now - max(self._last_ok, self._progress) > self.policy.hang_timeout:
            await self._replace(process, "hang", "no answer to the watchdog probe for "
                                f"{self.policy.hang_timeout:.1f} s")
        elif self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._ask())

    async def _ask(self) -> None:
        assert self._client is not None
        try:
            response = await self._client.get(self.probe_url,
                                               headers={"authorization": f"Bearer {self.token}"})
        except httpx.HTTPError:
            return
        if response.status_code == 200:
            self._last_ok = time.monotonic()

    async def _replace(self, process: WorkerdProcess, kind: str, detail: str) -> None:
        careful = time.time() * 1000 < self.careful_until_ms
        tail = process.output()[-2000:]
        # Kill first: a spinning object holds a core the replacement needs.
        try:
            await process.kill()
        except Exception:  # whatever went wrong, the host gets its process back
            log.exception("DO host: stopping the old workerd failed; replacing it anyway")
        suspects = self.announced.suspects() if careful else {}
        self.announced.clear()
        blamed = next(iter(suspects)) if len(suspects) == 1 else None
        log.error("DO host workerd %s (%s); suspects %s; replacing it. Last output:\n%s",
                  "hung" if kind == "hang" else "died", detail,
                  sorted(suspects) if careful else "unknown (not in careful mode)", tail)
        self.incidents.append(HostIncident(kind, detail, careful, blamed, time.time()))
        del self.incidents[:-100]
        if blamed is not None and self.striker is not None:
            try:
                await self.striker.strike(Target(blamed, suspects[blamed]), kind, precise=True,
                                          instance="objects", detail=f"DO host: {detail}")
            except Exception:  # the log is down: the host must come back regardless
                log.exception("DO host: striking %s failed", blamed)
        # Whoever it was, the next hang names them: tenant code runs announced for a while.
        self.careful_until_ms = int(time.time() * 1000 + self.incidents_policy.probation_s
                                    * 1000)
        delay = 0.1
        while True:
            try:
                await self.spawn(self.careful_until_ms)
                break
            except Exception as exc:  # any failure is retried: the host is never given up
                log.error("DO host workerd failed to start (retrying in %.1f s): %s", delay,
                          exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        self._last_ok = self._progress = time.monotonic()
        self._io = -1
