"""The state service's route cache over the projection, with an invalidation journal.

What is cached, per namespace that someone asked about (including namespaces
that do not exist, so 404 floods stay cheap): the raw namespace record, the
`workers:{ns}` hash and the `routes:{ns}` hash, plus the loader ids computed
from them. Host claims are cached whole, indexed by host (services/state/routing.py);
where host verification is on, only claims of a host's verified owner are kept.

Freshness (docs/dataplane.md, "Read-your-writes"): `sync()` reads the
projection's applied position (generation + per-partition offsets). When it
moved, every cached namespace that *may* have changed (those on a partition
whose offset moved, or all of them when the partition count is unknown) is
re-read and compared; the ones that differ, and the host table if it differs,
are recorded in a journal under a new epoch. Gateways ask "what changed since
epoch E" and drop exactly those entries. A generation switch (rebuild), an
evicted entry or a journal that no longer reaches back to E means "flush".

All loads and refreshes hold one lock, so a load can never insert data that
is older than a refresh that already ran.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from eventlog.partitioning import partition_for
from projections import keys
from projections.reader import ProjectionReader
from projections.redis_store import RedisProjectionStore
from projections.store import ProjectionStore
from services.state.assets import version_assets
from services.state.coalesce import Coalescer
from services.state.routing import HostClaim, HostEntry, index_claims

_decode = msgspec.json.Decoder()

# The current generation and its applied positions in one round trip: every barrier
# round of every gateway process reads them (two sequential reads otherwise).
_POSITION = """
local g = redis.call('GET', KEYS[1])
if not g then return false end
return {g, redis.call('HGETALL', ARGV[1] .. 'g' .. g .. ':' .. ARGV[2])}
"""


@dataclass(frozen=True)
class Route:
    namespace: str
    worker: str
    version: str
    loader_id: str
    egress: dict[str, Any] | None = None  # the namespace's egress policy (None: public)
    grants: tuple[dict[str, str], ...] = ()  # namespaces allowed to call its workers
    limits: dict[str, int] | None = None  # per-request budgets (None: platform defaults)
    workers_dev: bool = True  # False: not served on the namespace URL (only its host claims)
    assets: dict[str, Any] | None = None  # the version's Static Assets (services/state/assets.py)
    # The Hyperdrive config ids the version binds: the only `<id>.hyperdrive.wdl` its
    # connect() reaches (the egress routes them to the pooler; workerd/gateway/pooler.js).
    hyperdrive: tuple[str, ...] = ()


def version_hyperdrive(meta: dict[str, Any] | None) -> tuple[str, ...]:
    """The Hyperdrive config ids a version's bindings target."""
    if not meta or meta.get("deleted"):
        return ()
    return tuple(sorted({str(b["target"]) for b in meta.get("bindings") or ()
                         if b.get("kind") == "hyperdrive" and b.get("target")}))


@dataclass(frozen=True)
class Missing:
    # namespace_not_found | namespace_quarantined | worker_not_found | version_quarantined
    code: str
    message: str
    status: int = 404


@dataclass
class _Namespace:
    record: str | None
    workers: dict[str, str]
    routes: dict[str, str]
    loader_ids: dict[str, tuple[str, str]] = field(default_factory=dict)  # worker -> (version, id)
    # worker -> (version, its `assets` or None, its Hyperdrive config ids): read once per
    # version, which never changes
    assets: dict[str, tuple[str, dict[str, Any] | None, tuple[str, ...]]] = field(
        default_factory=dict)
    policy: tuple[dict[str, Any] | None, tuple[dict[str, str], ...],
                  dict[str, int] | None] | None = None
    quarantine: dict[str, frozenset[str]] | None = None  # worker -> quarantined versions
    hold: dict[str, Any] | None = None  # the namespace's hold (parsed with the policies)

    def quarantined(self, worker: str) -> frozenset[str]:
        if self.quarantine is None:
            found: dict[str, frozenset[str]] = {}
            for name, raw in self.workers.items():
                if '"quarantined"' in raw:  # rare: skip decoding every worker record
                    found[name] = frozenset(_decode.decode(raw).get("quarantined") or ())
            self.quarantine = found
        return self.quarantine.get(worker, frozenset())

    def policies(self) -> tuple[dict[str, Any] | None, tuple[dict[str, str], ...],
                                dict[str, int] | None]:
        """(egress policy, service grants, limits) from the namespace record, parsed once."""
        if self.policy is None:
            doc: dict[str, Any] = _decode.decode(self.record) if self.record else {}
            self.policy = (doc.get("egress"), tuple(doc.get("grants") or ()), doc.get("limits"))
            self.hold = doc.get("held")
        return self.policy

    def held(self) -> dict[str, Any] | None:
        self.policies()
        return self.hold

    def same_as(self, other: _Namespace) -> bool:
        return (self.record, self.workers, self.routes) == (
            other.record, other.workers, other.routes)


@dataclass(frozen=True)
class Changes:
    epoch: int
    flush: bool
    namespaces: frozenset[str]
    hosts: bool


@dataclass(frozen=True)
class _Entry:
    epoch: int
    namespaces: frozenset[str]
    hosts: bool
    flush: bool


Position = tuple[int, dict[int, int]]


def loader_id(namespace: str, worker: str, version: str,
              secret_envelopes: Mapping[str, str]) -> str:
    """`ns:worker:version`, plus a digest of the sealed secrets when the worker has any.

    The workerLoader caches an isolate (and its `env`) by id forever, so the id
    must change whenever what goes into `env` changes. Versions are immutable;
    secrets are not, so their sealed envelopes (never plaintext) are hashed in.
    """
    base = f"{namespace}:{worker}:{version}"
    if not secret_envelopes:
        return base
    h = hashlib.sha256()
    for name in sorted(secret_envelopes):
        h.update(name.encode() + b"\x00" + secret_envelopes[name].encode() + b"\x01")
    return f"{base}:s{h.hexdigest()[:12]}"


class RouteView:
    def __init__(self, store: ProjectionStore, *, partitions: int | None = None,
                 max_namespaces: int = 100_000, journal_size: int = 4096,
                 verified_hosts_only: bool = False) -> None:
        self.store = store
        self.partitions = partitions
        # Production: a claim routes only once its namespace proved it holds the host's
        # DNS (docs/hosts.md); `wdl dev` and tests may turn that off.
        self.verified_hosts_only = verified_hosts_only
        self.max_namespaces = max_namespaces
        self.boot = secrets.token_hex(8)
        self.epoch = 0
        self.refreshes = 0
        self._position: Position | None = None
        self._namespaces: OrderedDict[str, _Namespace] = OrderedDict()
        self._hosts: dict[str, str] | None = None
        self._claims: list[HostClaim] = []
        self._table: dict[str, HostEntry] = {}
        self._journal: deque[_Entry] = deque(maxlen=journal_size)
        self._evicted: set[str] = set()
        self._lock = asyncio.Lock()
        self._sync = Coalescer(self._sync_once)
        self._position_script: Any = None

    # --- freshness -------------------------------------------------------------

    async def sync(self) -> int:
        """Bring the cache up to the projection's position as of (at least) now; the epoch."""
        return await self._sync.run()

    async def _read_position(self) -> Position:
        store = self.store
        if isinstance(store, RedisProjectionStore):
            if self._position_script is None:
                self._position_script = store.client.register_script(_POSITION)
            found = await self._position_script(keys=[f"{store.prefix}current"],
                                                args=[store.prefix, keys.APPLIED])
            if found:
                flat = found[1]
                return int(found[0]), {int(flat[i]): int(flat[i + 1])
                                       for i in range(0, len(flat), 2)}
        gen = await store.current_generation()  # creates the first generation if needed
        return gen, await store.applied(gen)

    async def _sync_once(self) -> int:
        gen, applied = await self._read_position()
        if self._position == (gen, applied):
            return self.epoch
        async with self._lock:
            await self._refresh((gen, applied))
        return self.epoch

    async def _refresh(self, position: Position) -> None:
        old = self._position
        self._position = position
        self.refreshes += 1
        if old is None:
            return
        if old[0] != position[0]:
            self._namespaces.clear()
            self._hosts = None
            self._claims, self._table = [], {}
            self._record(frozenset(), hosts=True, flush=True)
            return
        moved = {p for p in set(old[1]) | set(position[1])
                 if old[1].get(p, 0) != position[1].get(p, 0)}
        if not moved:
            return
        changed: set[str] = set()
        for ns in list(self._namespaces):
            if self.partitions is not None and partition_for(ns, self.partitions) not in moved:
                continue
            fresh = await self._read_namespace(ns)
            if not fresh.same_as(self._namespaces[ns]):
                self._namespaces[ns] = fresh
                changed.add(ns)
        hosts_changed = False
        if self._hosts is not None:
            raw = await self.store.hgetall(keys.HOSTS)
            if raw != self._hosts:
                self._set_hosts(raw)
                hosts_changed = True
        if changed or hosts_changed:
            self._record(frozenset(changed), hosts=hosts_changed, flush=False)

    def _record(self, namespaces: frozenset[str], *, hosts: bool, flush: bool) -> None:
        if self._evicted:
            namespaces = namespaces | self._evicted
            self._evicted = set()
        self.epoch += 1
        self._journal.append(_Entry(self.epoch, namespaces, hosts, flush))

    def touch(self, namespaces: set[str]) -> None:
        """Tell gateways to drop their cached routes of `namespaces` (data beside the
        projection changed, e.g. probation)."""
        if namespaces:
            self._record(frozenset(namespaces), hosts=False, flush=False)

    def changes_since(self, epoch: int, boot: str | None = None) -> Changes:
        """What a cache synced at `epoch` (of boot `boot`) must drop to be current."""
        if boot != self.boot or epoch > self.epoch:
            return Changes(self.epoch, True, frozenset(), True)
        if epoch == self.epoch:
            return Changes(self.epoch, False, frozenset(), False)
        oldest = self._journal[0].epoch if self._journal else self.epoch + 1
        if epoch < oldest - 1:
            return Changes(self.epoch, True, frozenset(), True)
        namespaces: set[str] = set()
        hosts = flush = False
        for entry in self._journal:
            if entry.epoch > epoch:
                namespaces |= entry.namespaces
                hosts |= entry.hosts
                flush |= entry.flush
        return Changes(self.epoch, flush, frozenset(namespaces), hosts)

    @property
    def position(self) -> Position | None:
        return self._position

    # --- reads -----------------------------------------------------------------

    async def _read_namespace(self, ns: str) -> _Namespace:
        record = await self.store.hget(keys.NAMESPACES, ns)
        if record is None:
            return _Namespace(None, {}, {})
        workers = await self.store.hgetall(keys.workers(ns))
        routes = await self.store.hgetall(keys.routes(ns))
        return _Namespace(record, workers, routes)

    async def _namespace(self, ns: str) -> _Namespace:
        view = self._namespaces.get(ns)
        if view is not None:
            self._namespaces.move_to_end(ns)
            return view
        async with self._lock:
            view = self._namespaces.get(ns)
            if view is None:
                if self._position is None:
                    gen = await self.store.current_generation()
                    self._position = (gen, await self.store.applied(gen))
                view = await self._read_namespace(ns)
                self._namespaces[ns] = view
                while len(self._namespaces) > self.max_namespaces:
                    evicted, _ = self._namespaces.popitem(last=False)
                    # Gateways may hold it: the next epoch tells them to drop it.
                    self._evicted.add(evicted)
                if self._evicted:
                    self._record(frozenset(), hosts=False, flush=False)
        return view

    async def route(self, ns: str, worker: str) -> Route | Missing:
        view = await self._namespace(ns)
        if view.record is None:
            return Missing("namespace_not_found", f"namespace {ns!r} does not exist")
        if view.held() is not None:
            # Before any worker or version: a hold outlives every redeploy.
            return Missing("namespace_quarantined",
                           f"namespace {ns!r} is held back: its workers stopped the data plane "
                           "(a hang or a crash) too often; an operator can lift it "
                           f"(wdl quarantine lift {ns})", 503)
        version = view.routes.get(worker)
        if version is None:
            state = _worker_state(view.workers.get(worker))
            return Missing("worker_not_found",
                           f"worker {worker!r} of namespace {ns!r} {state}")
        if version in view.quarantined(worker):
            return Missing("version_quarantined",
                           f"version {version} of {ns}/{worker} is quarantined: it stopped "
                           "the data plane (a hang or a crash) too often; an operator can lift "
                           "it (wdl quarantine lift) or promote another version", 503)
        egress, grants, limits = view.policies()
        # Rendered only when false (projections/fold/workers.py): skip decoding otherwise.
        raw = view.workers.get(worker) or ""
        on_url = '"workers_dev"' not in raw or _decode.decode(raw).get("workers_dev", True)
        known = view.assets.get(worker)
        if known is None or known[0] != version:
            meta = await ProjectionReader(self.store).version(ns, worker, version)
            known = (version, version_assets(meta), version_hyperdrive(meta))
            view.assets[worker] = known
        _, assets, hyperdrive = known
        cached = view.loader_ids.get(worker)
        if cached is not None and cached[0] == version:
            return Route(ns, worker, version, cached[1], egress, grants, limits, on_url, assets,
                         hyperdrive)
        lid = loader_id(ns, worker, version, await self.secret_envelopes(ns, worker))
        view.loader_ids[worker] = (version, lid)
        return Route(ns, worker, version, lid, egress, grants, limits, on_url, assets,
                     hyperdrive)

    async def secret_scopes(self, ns: str, worker: str) -> tuple[dict[str, str], dict[str, str]]:
        """Sealed envelopes by name: (namespace scope, worker scope)."""
        return (await self.store.hgetall(keys.secrets(ns, None)),
                await self.store.hgetall(keys.secrets(ns, worker)))

    async def secret_envelopes(self, ns: str, worker: str) -> dict[str, str]:
        """Sealed envelopes by name (namespace scope, overridden by worker scope)."""
        shared, own = await self.secret_scopes(ns, worker)
        return {**shared, **own}

    async def _load_hosts(self) -> None:
        if self._hosts is None:
            async with self._lock:
                if self._hosts is None:
                    self._set_hosts(await self.store.hgetall(keys.HOSTS))

    async def claims(self) -> list[HostClaim]:
        """The claims that route (what gateways index; services/state/routing.py)."""
        await self._load_hosts()
        return self._claims

    async def host_table(self) -> dict[str, HostEntry]:
        await self._load_hosts()
        return self._table

    def _set_hosts(self, raw: dict[str, str]) -> None:
        self._hosts = raw
        claims: list[HostClaim] = []
        for pattern, value in sorted(raw.items()):
            doc: dict[str, Any] = _decode.decode(value)
            if self.verified_hosts_only and doc.get("verified") is not True:
                continue
            claims.append(HostClaim(pattern, str(doc["namespace"]), doc.get("worker"),
                                    "prefix" if doc.get("match") == "prefix" else "exact"))
        self._claims, self._table = claims, index_claims(claims)

    def cached_namespaces(self) -> int:
        return len(self._namespaces)


def _worker_state(raw: str | None) -> str:
    if raw is None:
        return "does not exist"
    doc = _decode.decode(raw)
    if doc.get("deleted"):
        return "is deleted"
    return "has no active version"
