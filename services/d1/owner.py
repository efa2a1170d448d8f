"""Which replica owns which database: leases `d1:{ns}/{db}`, the fence, forwarding.

A replica serves a database only as its lease holder, after writing its lease
generation into the database's fence (engine.py). It renews well within the
TTL; a refused renew marks the database lost here (later requests look for
the owner again). A request for a database another live replica holds is
forwarded there once (`x-wdl-d1-direct`: the receiver never forwards again);
a free or expired lease is acquired by whichever replica the request reached.
The holder id names the replica's address, so forwarding needs no registry.

SQLite work runs on the service's own worker threads, never the event loop's default
executor (shared with the rest of the process). One database runs one request at a time
(the others wait on the event loop, not on a thread), a namespace holds at most
`per_namespace` threads at once, and every tenant request is bounded by the time limit:
however slow one tenant's SQL, the other namespaces keep threads to run on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from projections.reader import ProjectionReader
from services.d1.confinement import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT_MS
from services.d1.engine import D1Failure, Database, Fenced
from services.leases import LeaseClient, LeaseLost

log = logging.getLogger("wdl.d1")
T = TypeVar("T")
DIRECT_HEADER = "x-wdl-d1-direct"
DEFAULT_TTL_MS = 3000
DEFAULT_THREADS = 16
# Requests waiting for one database beyond this are refused, as D1 does.
MAX_QUEUED = 64
OVERLOADED = "D1 DB is overloaded. Too many requests queued."


class NotFound(Exception):
    pass


class Unavailable(Exception):
    """No replica can serve the database right now (retryable)."""


@dataclass
class Owned:
    database: Database
    generation: int
    database_id: str
    deadline: float  # time.monotonic() by which the lease must be renewed
    lost: bool = False
    renewer: asyncio.Task[None] | None = None


@dataclass
class Forward:
    url: str


@dataclass
class _Gate:
    """One database's turn: requests wait here (on the event loop) for its thread."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0


@dataclass
class Owner:
    leases: LeaseClient
    reader: ProjectionReader
    root: Path
    host: str
    port: int
    token: str
    ttl_ms: int = DEFAULT_TTL_MS
    timeout_ms: int = DEFAULT_TIMEOUT_MS  # a tenant request's time limit
    threads: int = DEFAULT_THREADS
    max_bytes: int = DEFAULT_MAX_BYTES  # a database's size bound
    holder: str = ""
    owned: dict[tuple[str, str], Owned] = field(default_factory=dict)
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    _gates: dict[tuple[str, str], _Gate] = field(default_factory=dict)
    _namespaces: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    _executor: ThreadPoolExecutor | None = None
    _http: httpx.AsyncClient | None = None

    @property
    def per_namespace(self) -> int:
        """Threads one namespace may hold at once: a quarter of them (at least one)."""
        return max(1, self.threads // 4)

    async def start(self) -> None:
        self.holder = f"d1:{self.host}:{self.port}:{secrets.token_hex(4)}"
        self.leases.actor = self.holder
        self._executor = ThreadPoolExecutor(max_workers=self.threads,
                                            thread_name_prefix="wdl-d1")
        # Bounded: a paused owner holds a forwarded request until its lease lapses.
        self._http = httpx.AsyncClient(timeout=10.0)

    async def stop(self) -> None:
        owned = list(self.owned.items())
        self.owned.clear()
        for _, o in owned:
            if o.renewer is not None:
                o.renewer.cancel()
                with contextlib.suppress(BaseException):
                    await o.renewer
        # Best effort and bounded as a whole: a released lease is free at once,
        # otherwise it lapses within the TTL (under `wdl dev` the projector that would
        # answer may already be gone).
        releases = [self.leases.release(scope(*key), self.holder, o.generation)
                    for key, o in owned if not o.lost]
        if releases:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*releases, return_exceptions=True), 1.0)
        for _, o in owned:
            await self._thread(o.database.close)
        if self._http is not None:
            await self._http.aclose()
        if self._executor is not None:
            # A statement still running ends within the time limit.
            await asyncio.to_thread(self._executor.shutdown, wait=True)
            self._executor = None

    async def _thread(self, fn: Callable[..., T], *args: object) -> T:
        assert self._executor is not None, "the D1 owner is not started"
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _work(self, key: tuple[str, str], owned: Owned,
                    work: Callable[[Database, int], T]) -> T:
        """`work` on a D1 thread once it is this database's turn and its namespace has a
        thread free."""
        gate = self._gates.setdefault(key, _Gate())
        if gate.waiting >= MAX_QUEUED:
            raise D1Failure(OVERLOADED)
        slots = self._namespaces.setdefault(key[0], asyncio.Semaphore(self.per_namespace))
        gate.waiting += 1
        waiting = True
        try:
            async with gate.lock, slots:
                gate.waiting -= 1
                waiting = False
                done = asyncio.ensure_future(self._thread(work, owned.database,
                                                          owned.generation))
                try:
                    return await asyncio.shield(done)
                except asyncio.CancelledError:
                    # The caller went away, the thread did not: keep the database's turn
                    # and the namespace's thread until it returns (within the time limit).
                    with contextlib.suppress(BaseException):
                        await done
                    raise
        finally:
            if waiting:
                gate.waiting -= 1

    def status(self) -> dict[str, Any]:
        return {"holder": self.holder, "owned": {
            f"{ns}/{db}": {"generation": o.generation, "lost": o.lost}
            for (ns, db), o in sorted(self.owned.items())}}

    async def database_id(self, ns: str, db: str) -> str:
        doc = await self.reader.resource("d1", ns, db)
        if doc is None:
            raise NotFound(f"D1 database {db!r} does not exist in namespace {ns}")
        return str(doc["database_id"])

    async def run(self, ns: str, db: str, direct: bool,
                  work: Callable[[Database, int], T]) -> T | Forward:
        """`work(database, generation)` on a worker thread here, or where to forward."""
        key = (ns, db)
        owned = self.owned.get(key)
        try:
            database_id = await self.database_id(ns, db)
        except NotFound:
            if owned is not None:
                await self._let_go(key, owned)  # deleted: stop holding its lease
            raise
        if owned is not None and owned.database_id != database_id:
            # Deleted and created again under the same name: another file.
            await self._let_go(key, owned)
            owned = None
        if owned is None or (owned.lost and not direct):
            got = await self._resolve(ns, db, database_id, direct)
            if isinstance(got, Forward):
                return got
            owned = got
        try:
            return await self._work(key, owned, work)
        except Fenced:
            # Another replica took over: this one stops acting for the database.
            await self._drop(key, owned)
            raise

    async def _resolve(self, ns: str, db: str, database_id: str,
                       direct: bool) -> Owned | Forward:
        key = (ns, db)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            owned = self.owned.get(key)
            if owned is not None and not owned.lost:
                return owned
            if owned is not None:
                await self._drop(key, owned)
            view = await self.leases.view(scope(ns, db))
            now = self.leases.clock.now_ms()
            if not view.free(now) and view.holder != self.holder:
                url = holder_url(view.holder or "")
                if direct or url is None:
                    # The holder names a replica's address: the operator's log, not the
                    # tenant's answer.
                    log.warning("D1 %s/%s is held by %s, which cannot take this request",
                                ns, db, view.holder)
                    raise Unavailable(f"D1 database {db} is owned by another replica")
                return Forward(url)
            if not view.free(now):
                # An operator's takeover named this replica: adopt the generation.
                generation: int | None = view.generation
            else:
                generation = await self.leases.acquire(scope(ns, db), self.holder,
                                                       self.ttl_ms)
            if generation is None:
                raise Unavailable(f"D1 database {db}: another replica is taking it over")
            database = Database(self.root / ns / f"{database_id}.sqlite",
                                timeout_ms=self.timeout_ms, max_bytes=self.max_bytes)
            try:
                await self._thread(database.claim, generation)
            except BaseException:
                await self._thread(database.close)
                raise
            owned = Owned(database, generation, database_id,
                          time.monotonic() + self.ttl_ms / 1000)
            owned.renewer = asyncio.create_task(self._renew(key, owned),
                                                name=f"d1-renew-{ns}/{db}")
            self.owned[key] = owned
            log.info("owning D1 %s/%s at generation %d", ns, db, generation)
            return owned

    async def _let_go(self, key: tuple[str, str], owned: Owned) -> None:
        if not owned.lost:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.leases.release(scope(*key), self.holder, owned.generation), 2.0)
        await self._drop(key, owned)

    async def _drop(self, key: tuple[str, str], owned: Owned) -> None:
        owned.lost = True
        if self.owned.get(key) is owned:
            del self.owned[key]
        if owned.renewer is not None and owned.renewer is not asyncio.current_task():
            owned.renewer.cancel()
        await self._thread(owned.database.close)

    async def _renew(self, key: tuple[str, str], owned: Owned) -> None:
        # A third of the TTL: two renews may fail (a slow log) before the lease lapses.
        interval = self.ttl_ms / 3000
        while not owned.lost:
            await asyncio.sleep(interval)
            try:
                await self.leases.renew(scope(*key), self.holder, owned.generation, self.ttl_ms)
                owned.deadline = time.monotonic() + self.ttl_ms / 1000
            except LeaseLost:
                log.warning("lease of D1 %s/%s lost at generation %d", *key, owned.generation)
                owned.lost = True
            except Exception:  # the log or projection is slow or down: retry
                log.exception("renew of D1 %s/%s failed", *key)
                if time.monotonic() > owned.deadline:
                    owned.lost = True

    async def forward(self, target: Forward, path: str, body: bytes,
                      params: dict[str, str]) -> httpx.Response:
        assert self._http is not None
        try:
            return await self._http.post(target.url + path, content=body, params=params,
                                         headers={DIRECT_HEADER: "1",
                                                  "x-wdl-internal-token": self.token})
        except httpx.HTTPError as exc:
            log.warning("the D1 owner replica %s is unreachable: %s", target.url, exc)
            raise Unavailable("the replica owning the database is unreachable") from None


def scope(ns: str, db: str) -> str:
    return f"d1:{ns}/{db}"


def holder_url(holder: str) -> str | None:
    """The replica a holder id names, or None for another kind of holder (an operator)."""
    parts = holder.split(":")
    if len(parts) != 4 or parts[0] != "d1" or not parts[2].isdigit():
        return None
    return f"http://{parts[1]}:{parts[2]}"

