"""Run the gateway's workerd processes: several per host, watched, replaced, recycled.

workerd is single-threaded and enforces no CPU or memory limit on the isolates
it loads, so one tenant's `while (true) {}` stops every request of that
process and a JS heap out-of-memory aborts it (docs/containment.md). The
supervisor therefore

- runs `processes` workerd processes (default: one per core), each accepting on
  its own socket of one SO_REUSEPORT group on the public port; the kernel
  spreads new connections over the processes the supervisor last saw answer,
  so a stuck one stops getting new ones while the others keep serving
  (listeners.py);
- probes each process over its *private* socket every `probe_interval`; a
  process that has not answered for `hang_timeout` is SIGKILLed (its event
  loop would not even act on SIGTERM) and replaced in its slot, and one that
  exited (abort, crash) is replaced too. Each replacement runs in a task of its
  own while the loop keeps probing every other slot; it reports the incident to
  the state service (which works out the culprit namespace and strikes it)
  *before* the new process takes the connections queued on the slot, so those
  meet the verdict, not a fresh process that trusts everyone; it counts as up
  only once it answers on its private socket (the public one is shared and
  steered); and it retries with backoff for as long as it takes: no slot is
  ever given up;
- recycles a process to release isolates of old versions: workerLoader keeps
  every named isolate for the life of the process, so when `max_stale` loaded
  ids are no longer routed (or `max_loaded` in total) the slot gets a new
  process started on the same socket, and the old one gets SIGTERM once the
  new one answers. Requests keep flowing throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge

from eventlog.private_files import write_private
from services.dataplane.config import (
    PRIVATE_SOCKET,
    PUBLIC_SOCKET,
    GatewayOptions,
    loader_resident,
    render_gateway_config,
)
from services.dataplane.listeners import SlotListeners
from services.dataplane.workerd_process import WorkerdProcess, main_thread_syscalls
from services.serving import bind

log = logging.getLogger("wdl.gateway")
READY_PATH = "/__wdl/healthz"
INTERNAL_HEADER = "x-wdl-internal-token"


@dataclass(frozen=True)
class RecyclePolicy:
    max_stale: int = 64      # recycle when this many loaded ids are no longer routed
    max_loaded: int = 1000   # ... or when this many ids are loaded in total
    # ... or when a process holds this many tenants' dynamic Workers (docs/loaders.md):
    # the state service does not see those, the process's health answer counts them.
    # A backstop: the process itself keeps at most `loader_resident` (config.py).
    max_children: int = field(default_factory=lambda: 2 * loader_resident())
    interval: float = 5.0    # seconds between checks; 0 disables automatic recycling


@dataclass(frozen=True)
class WatchdogPolicy:
    # A probe is a tiny request answered by the gateway worker itself: it only
    # waits when the process's event loop is busy. `hang_timeout` is therefore
    # the longest a tenant may hold the CPU in one go (the platform's CPU budget).
    probe_interval: float = 0.25
    hang_timeout: float = field(
        default_factory=lambda: float(os.environ.get("WDL_HANG_TIMEOUT", "1.5")))
    enabled: bool = True
    # A process whose last probe answer is older than this gets no new connections
    # (listeners.py) until it answers again: stuck, or too busy to take more.
    steer_after: float = 0.75

    @property
    def late(self) -> float:
        return min(self.steer_after, self.hang_timeout)


@dataclass(frozen=True)
class RecycleReport:
    reason: str
    old_instance: str
    new_instance: str
    seconds: float


@dataclass(frozen=True)
class Incident:
    kind: str  # hang | crash
    instance: str
    detail: str
    at: float  # time.time()


@dataclass
class _Instance:
    slot: int
    name: str
    process: WorkerdProcess
    private: socket.socket
    config: Path
    last_ok: float = field(default_factory=time.monotonic)
    probe: asyncio.Task[None] | None = None
    io: int = -1  # read+write syscalls of the main thread at the last watchdog tick
    last_progress: float = field(default_factory=time.monotonic)
    children: int = 0  # dynamic Workers resident, per the last probe's answer
    child_loads: int = 0  # ... loaded and evicted since the process started
    child_evictions: int = 0

    def progressed(self) -> bool:
        """Did the event loop make I/O syscalls since the last tick? A loop stuck in JS
        makes none; an overloaded one (probes answered late) makes many."""
        pid = self.process.pid
        io = main_thread_syscalls(pid) if pid is not None else None
        if io is None:
            return False  # not Linux, or gone: probes alone decide
        moved = self.io >= 0 and io != self.io
        self.io = io
        return moved

    @property
    def private_url(self) -> str:
        host, port = self.private.getsockname()[:2]
        return f"http://{host}:{port}"


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.kills = Counter("wdl_gateway_watchdog_kills_total",
                             "workerd processes the watchdog killed", ["reason"],
                             registry=registry)
        self.restarts = Counter("wdl_gateway_workerd_restarts_total",
                                "workerd processes started to replace another", ["reason"],
                                registry=registry)
        self.processes = Gauge("wdl_gateway_workerd_processes",
                               "workerd processes currently serving", registry=registry)
        self.steered = Gauge("wdl_gateway_steered_processes",
                             "workerd processes new connections are steered to",
                             registry=registry)
        self.probe_seconds = Gauge("wdl_gateway_probe_seconds",
                                   "Latency of the last watchdog probe", ["slot"],
                                   registry=registry)
        self.slots_down = Gauge("wdl_gateway_slots_down",
                                "Slots without a serving workerd process (being replaced); "
                                "alert when it stays above 0", registry=registry)
        self.loader_resident = Gauge("wdl_gateway_loader_resident_children",
                                     "Tenants' dynamic Workers loaded in a workerd process",
                                     ["slot"], registry=registry)
        self.loader_loads = Counter("wdl_gateway_loader_loads_total",
                                    "Dynamic Workers loaded (named ones, on a call that "
                                    "found them not resident)", registry=registry)
        self.loader_evictions = Counter("wdl_gateway_loader_evictions_total",
                                        "Dynamic Workers evicted to stay within the resident "
                                        "budget", registry=registry)
        self.spawn_failures = Counter("wdl_gateway_spawn_failures_total",
                                      "workerd processes that failed to start in a slot "
                                      "(retried with backoff)", registry=registry)


def default_processes() -> int:
    configured = os.environ.get("WDL_GATEWAY_PROCESSES")
    if configured:
        return max(1, int(configured))
    return max(1, min(os.cpu_count() or 1, 8))


class Gateway:
    def __init__(self, options: GatewayOptions, *, state_url: str, host: str = "127.0.0.1",
                 port: int = 8080, sock: socket.socket | None = None,
                 binary: str | Path | None = None, policy: RecyclePolicy | None = None,
                 watchdog: WatchdogPolicy | None = None, processes: int | None = None,
                 stop_timeout: float = 2.0, registry: CollectorRegistry | None = None,
                 incident_wait: float = 2.0) -> None:
        self.options = options
        self.state_url = state_url.rstrip("/")
        self.host = host
        self.port = port
        # WORKERD_BIN (set by the harness and the Docker image) before the pinned npm copy.
        self.binary = binary or os.environ.get("WORKERD_BIN") or None
        self.policy = policy or RecyclePolicy()
        self.watchdog = watchdog or WatchdogPolicy()
        self.processes = processes if processes is not None else default_processes()
        if self.processes < 1:
            raise ValueError("the gateway needs at least one workerd process")
        self.stop_timeout = stop_timeout
        # How long a replacement waits for the state service's verdict on its incident.
        self.incident_wait = incident_wait
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = GatewayMetrics(self.registry)
        self.recycles: list[RecycleReport] = []
        self.incidents: list[Incident] = []
        self._sock = sock  # a caller's socket: shared by every process, not steered
        self._listeners: SlotListeners | None = None
        self._slots: list[_Instance | None] = []
        self._slot_locks: list[asyncio.Lock] = []  # a replacement and a recycle of one slot
        self._replacing: dict[int, asyncio.Task[None]] = {}
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._lock = asyncio.Lock()
        self._client: httpx.AsyncClient | None = None
        self._probe_client: httpx.AsyncClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reports: set[asyncio.Task[None]] = set()

    # --- lifecycle ---------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        if self._listeners is not None:
            return self._listeners.address
        if self._sock is None:
            raise RuntimeError("gateway is not started")
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def instances(self) -> list[_Instance]:
        return [i for i in self._slots if i is not None]

    @property
    def instance(self) -> str | None:
        live = self.instances()
        return live[0].name if live else None

    @property
    def pid(self) -> int | None:
        live = self.instances()
        return live[0].process.pid if live else None

    @property
    def pids(self) -> list[int]:
        return [i.process.pid for i in self.instances() if i.process.pid is not None]

    def output(self) -> str:
        return "\n".join(i.process.output() for i in self.instances())

    async def start(self) -> None:
        if self._sock is None:
            self._listeners = SlotListeners(self.host, self.port, self.processes)
            self._listeners.open()
        self._dir = tempfile.TemporaryDirectory(prefix="wdl-gateway-")
        # Every call of the supervisor (probes, stats, incidents) carries the internal token.
        token = {INTERNAL_HEADER: self.options.internal_token}
        self._client = httpx.AsyncClient(timeout=5.0, headers=token)
        # Its own client and pool: a probe must never queue behind a slow stats call.
        self._probe_client = httpx.AsyncClient(timeout=self.watchdog.hang_timeout,
                                               headers=token)
        self._slot_locks = [asyncio.Lock() for _ in range(self.processes)]
        try:
            self._slots = list(await asyncio.gather(
                *(self._spawn(slot) for slot in range(self.processes))))
        except BaseException:
            await self.stop()
            raise
        self.metrics.processes.set(len(self._slots))
        self._steer(probes=False)
        if self.watchdog.enabled:
            self._tasks.append(asyncio.create_task(self._watch_loop(), name="gateway-watchdog"))
        if self.policy.interval > 0:
            self._tasks.append(asyncio.create_task(self._recycle_loop(),
                                                   name="gateway-recycler"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        replacing = list(self._replacing.values())
        for task in replacing:
            task.cancel()
        await asyncio.gather(*replacing, return_exceptions=True)
        for report in list(self._reports):
            report.cancel()
        async with self._lock:
            live = self.instances()
            self._slots = []
            await asyncio.gather(*(self._retire(i) for i in live), return_exceptions=True)
        for client in (self._client, self._probe_client):
            if client is not None:
                await client.aclose()
        self._client = self._probe_client = None
        if self._listeners is not None:
            self._listeners.close()
            self._listeners = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # --- instances ---------------------------------------------------------------

    async def _spawn(self, slot: int) -> _Instance:
        assert self._dir is not None
        public = self._listeners.socket_for(slot) if self._listeners is not None else self._sock
        assert public is not None
        name = f"gw{slot}-{secrets.token_hex(6)}"
        config = Path(self._dir.name) / f"{name}.capnp"
        private = bind("127.0.0.1", 0)
        host, port = private.getsockname()[:2]
        # It holds the internal token: 0600, in the 0700 TemporaryDirectory.
        write_private(config, render_gateway_config(self.options, name, f"{host}:{port}"))
        process = WorkerdProcess(
            config, binary=self.binary, ready_path=READY_PATH,
            socket_fds={PUBLIC_SOCKET: public, PRIVATE_SOCKET: private},
            ready_sockets=(PRIVATE_SOCKET,), stop_timeout=self.stop_timeout)
        try:
            await process.start()
        except BaseException:
            private.close()
            raise
        log.info("gateway workerd %s started (pid %s)", name, process.pid)
        return _Instance(slot, name, process, private, config)

    async def _retire(self, instance: _Instance, *, kill: bool = False) -> None:
        if instance.probe is not None:
            instance.probe.cancel()
        if kill:
            await instance.process.kill()
        else:
            await instance.process.stop()
        instance.private.close()
        instance.config.unlink(missing_ok=True)

    async def recycle(self, reason: str = "requested", *,
                      slots: list[int] | None = None) -> RecycleReport:
        """Replace workerd processes (all, or `slots`) one by one without refusing a
        connection: each new process answers before the one it replaces gets SIGTERM."""
        started = time.perf_counter()
        olds: list[str] = []
        news: list[str] = []
        async with self._lock:
            if not self._slots:
                raise RuntimeError("gateway is not started")
            for slot in (slots if slots is not None else range(len(self._slots))):
                async with self._slot_locks[slot]:
                    old = self._slots[slot]
                    if old is None:
                        continue  # being replaced: the replacement is a new process already
                    new = await self._spawn(slot)
                    self._slots[slot] = new
                    news.append(new.name)
                    olds.append(old.name)
                    await self._retire(old)
        report = RecycleReport(reason, ",".join(olds), ",".join(news),
                               time.perf_counter() - started)
        self.recycles.append(report)
        log.info("gateway recycled (%s): %s -> %s in %.0f ms", reason, report.old_instance,
                 report.new_instance, report.seconds * 1000)
        return report

    # --- watchdog ----------------------------------------------------------------

    async def set_watchdog(self, enabled: bool) -> None:
        """Pause or resume the watchdog (benchmarks measure its cost this way)."""
        running = [t for t in self._tasks if t.get_name() == "gateway-watchdog"]
        if enabled and not running:
            for instance in self.instances():
                instance.last_ok = time.monotonic()
            self._tasks.append(asyncio.create_task(self._watch_loop(), name="gateway-watchdog"))
        elif not enabled:
            for task in running:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                self._tasks.remove(task)
            self._steer(probes=False)

    def _steer(self, *, probes: bool = True) -> None:
        """New connections go to the processes that answered their last probe in time
        (`probes=False`: to every running one)."""
        if self._listeners is None:
            return
        now = time.monotonic()
        late = self.watchdog.late
        live = [i is not None and i.process.running and (not probes or now - i.last_ok <= late)
                for i in self._slots]
        if self._listeners.steer(live):
            log.info("gateway: new connections go to slots %s",
                     ",".join(map(str, self._listeners.steered)))
        self.metrics.steered.set(len(self._listeners.steered))

    @property
    def steered(self) -> tuple[int, ...]:
        """The slots new connections are steered to now."""
        if self._listeners is None:
            return tuple(range(len(self._slots)))
        return self._listeners.steered

    async def _probe(self, instance: _Instance) -> None:
        assert self._probe_client is not None
        started = time.monotonic()
        try:
            response = await self._probe_client.get(instance.private_url + READY_PATH)
        except httpx.HTTPError:
            return
        if response.status_code == 200:
            instance.last_ok = time.monotonic()
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                self._children(instance, response.json())
            self.metrics.probe_seconds.labels(str(instance.slot)).set(
                instance.last_ok - started)

    def _children(self, instance: _Instance, body: dict[str, object]) -> None:
        """The dynamic Workers the health answer reports (gateway/children.js)."""
        instance.children = int(str(body.get("children", 0)))
        self.metrics.loader_resident.labels(str(instance.slot)).set(instance.children)
        loads = int(str(body.get("childLoads", 0)))
        evictions = int(str(body.get("childEvictions", 0)))
        # Counters of the process: the first answer of a new one starts from its own zero.
        self.metrics.loader_loads.inc(max(0, loads - instance.child_loads))
        self.metrics.loader_evictions.inc(max(0, evictions - instance.child_evictions))
        instance.child_loads, instance.child_evictions = loads, evictions

    async def _watch_loop(self) -> None:
        policy = self.watchdog
        while True:
            await asyncio.sleep(policy.probe_interval)
            for instance in self.instances():
                now = time.monotonic()
                if instance.progressed():
                    instance.last_progress = now
                if not instance.process.running:
                    code = instance.process.returncode
                    self._replace(instance, "crash", f"workerd exited with status {code}")
                elif now - max(instance.last_ok, instance.last_progress) > policy.hang_timeout:
                    self._replace(instance, "hang", f"no answer to the watchdog probe for "
                                  f"{policy.hang_timeout:.1f} s")
                elif instance.probe is None or instance.probe.done():
                    instance.probe = asyncio.create_task(self._probe(instance))
            self._steer()

    def _replace(self, instance: _Instance, kind: str, detail: str) -> None:
        """Take the instance out of its slot now; kill and replace it in a task of its own
        (the loop must keep watching the other slots meanwhile)."""
        slot = instance.slot
        if slot >= len(self._slots) or self._slots[slot] is not instance:
            return  # recycled or stopped meanwhile
        self._slots[slot] = None
        self._steer()
        self.metrics.processes.set(len(self.instances()))
        self.metrics.slots_down.set(len(self._slots) - len(self.instances()))
        if kind == "hang":
            self.metrics.kills.labels(kind).inc()
        task = asyncio.create_task(self._replacement(instance, kind, detail),
                                   name=f"gateway-replace-{slot}")
        self._replacing[slot] = task
        task.add_done_callback(lambda t: self._replaced(slot, t))

    def _replaced(self, slot: int, task: asyncio.Task[None]) -> None:
        if self._replacing.get(slot) is task:
            del self._replacing[slot]
        if not task.cancelled() and task.exception() is not None:
            log.error("replacing gateway slot %d failed: %r", slot, task.exception())

    async def _replacement(self, instance: _Instance, kind: str, detail: str) -> None:
        slot = instance.slot
        async with self._slot_locks[slot]:
            try:
                tail = instance.process.output()[-2000:]
                # Kill first: a spinning tenant holds a core the replacement needs.
                await self._retire(instance, kill=True)
                incident = Incident(kind, instance.name, detail, time.time())
                self.incidents.append(incident)
                del self.incidents[:-100]
                log.error("gateway workerd %s %s (%s); replacing it. Last output:\n%s",
                          instance.name, "hung" if kind == "hang" else "died", detail, tail)
                # The connections queued on this slot's socket go to the replacement: let
                # the state service conclude first, so they meet the culprit's probation or
                # hold.
                await self._report(incident, wait=self.incident_wait)
            except Exception:  # whatever went wrong, the slot gets its process back
                log.exception("gateway slot %d: cleaning up after %s failed; replacing it "
                              "anyway", slot, instance.name)
            replacement = await self._spawn_until_up(slot)
            if self._slot_locks and self._slots and self._slots[slot] is None:
                self._slots[slot] = replacement
            else:  # stopped meanwhile
                await self._retire(replacement)
                return
        self._steer()
        self.metrics.restarts.labels(kind).inc()
        self.metrics.processes.set(len(self.instances()))
        self.metrics.slots_down.set(len(self._slots) - len(self.instances()))

    async def _spawn_until_up(self, slot: int) -> _Instance:
        """A new process in `slot`, however many attempts it takes (backoff up to 10 s)."""
        delay = 0.1
        while True:
            try:
                return await self._spawn(slot)
            except Exception as exc:  # any failure is retried: no slot is ever given up
                self.metrics.spawn_failures.inc()
                log.error("gateway workerd for slot %d failed to start (retrying in %.1f s): "
                          "%s", slot, delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _report(self, incident: Incident, *, wait: float) -> None:
        """Send the incident; wait at most `wait` seconds for the state service's answer
        (the report carries on in the background after that)."""
        task = asyncio.create_task(self._send_incident(incident))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)
        await asyncio.wait({task}, timeout=wait)

    async def _send_incident(self, incident: Incident) -> None:
        assert self._client is not None
        body = {"instance": incident.instance, "kind": incident.kind, "detail": incident.detail}
        for attempt in range(5):
            try:
                response = await self._client.post(
                    f"{self.state_url}/incident", json=body,
                    headers={INTERNAL_HEADER: self.options.internal_token})
                if response.status_code < 500:
                    if response.status_code != 200:
                        log.warning("incident report refused: %s", response.text[:500])
                    else:
                        log.info("incident on %s: %s", incident.instance, response.text[:500])
                    return
            except httpx.HTTPError as exc:
                log.warning("incident report failed (attempt %d): %s", attempt + 1, exc)
            await asyncio.sleep(0.5 * (attempt + 1))

    # --- recycling ---------------------------------------------------------------

    async def stats(self, instance: _Instance | None = None) -> dict[str, int]:
        """Loaded and stale loader ids (of one process, or summed over all), per the
        state service."""
        assert self._client is not None
        total = {"loaded": 0, "stale": 0}
        for inst in [instance] if instance is not None else self.instances():
            response = await self._client.get(f"{self.state_url}/stats",
                                              params={"instance": inst.name})
            response.raise_for_status()
            body = response.json()
            total["loaded"] += int(body["loaded"])
            total["stale"] += int(body["stale"])
        return total

    async def _recycle_loop(self) -> None:
        while True:
            await asyncio.sleep(self.policy.interval)
            for instance in self.instances():
                try:
                    counts = await self.stats(instance)
                except (httpx.HTTPError, KeyError, ValueError) as exc:
                    log.debug("recycle check skipped: %s", exc)
                    continue
                reason = None
                if counts["stale"] >= self.policy.max_stale:
                    reason = f"{counts['stale']} stale isolates"
                elif counts["loaded"] >= self.policy.max_loaded:
                    reason = f"{counts['loaded']} loaded isolates"
                elif instance.children >= self.policy.max_children:
                    reason = f"{instance.children} dynamic Workers"
                if reason is not None and self._slots[instance.slot] is instance:
                    await self.recycle(reason, slots=[instance.slot])
