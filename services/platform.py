"""One process running any subset of the platform: control API, projector, state
service and the gateway (workerd). `wdl dev` runs all four on embedded
backends; `wdl up` on Kafka/Redis/PostgreSQL/S3; `wdl up --only X` one alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from eventlog.private_files import private_dir
from projections.projector import Projector
from projections.reader import ProjectionReader
from projections.runtime import Backends, open_backends
from services.blobstore import BlobStore, open_blob_store
from services.components import COMPONENTS, DEV_KEY_FILE, INTERNAL_TOKEN_FILE, TOKEN_FILE
from services.crypto import Keyring, load_keyring
from services.d1 import D1Service
from services.d1.confinement import DEFAULT_MAX_BYTES as DEFAULT_D1_MAX_BYTES
from services.d1.confinement import DEFAULT_TIMEOUT_MS as DEFAULT_D1_TIMEOUT_MS
from services.data import DataService
from services.dataplane.config import GatewayOptions
from services.dataplane.gateway import Gateway, RecyclePolicy, WatchdogPolicy
from services.hostpolicy import HostPolicy, verification_from_env
from services.internal import InternalTokenGuard
from services.leases import LeaseClient
from services.objects import ObjectsHost, ObjectsOptions
from services.scheduler.clock import SystemClock
from services.scheduler.dispatch import GatewayDispatcher
from services.scheduler.scheduler import Scheduler, namespace_shares
from services.serving import HttpServer, bind
from services.settings import Settings
from services.stalls import report_stalls, task_stacks
from services.state.service import StateService

log = logging.getLogger("wdl.platform")

PROJECTOR_STOP_S = 30.0


@dataclass(frozen=True)
class PlatformOptions:
    components: frozenset[str] = frozenset(COMPONENTS)
    api_host: str = "127.0.0.1"
    api_port: int = 8787
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    state_host: str = "127.0.0.1"
    state_port: int = 8790
    data_host: str = "127.0.0.1"
    data_port: int = 8793
    data_url: str | None = None  # gateway alone: where the data service is
    # Operators' test setting: lets tenants reach loopback (never private or metadata).
    egress_allow_loopback: bool = field(
        default_factory=lambda: os.environ.get("WDL_EGRESS_ALLOW_LOOPBACK") == "1")
    projector_health_port: int = 8791
    scheduler_health_port: int = 8792
    domain: str = "workers.local"
    # Production: a host claim routes only once its namespace proved the host's DNS
    # (docs/hosts.md). `wdl dev` turns it off, as does WDL_HOST_VERIFICATION=off.
    host_verification: bool = field(
        default_factory=lambda: verification_from_env(os.environ))
    # Where the API looks up ownership proofs ("ip[:port]", comma-separated; default: the
    # system's resolvers).
    dns_resolver: str | None = field(
        default_factory=lambda: os.environ.get("WDL_DNS_RESOLVER") or None)
    state_url: str | None = None  # gateway alone: where the state service is
    workerd_bin: str | None = None
    recycle: RecyclePolicy = field(default_factory=RecyclePolicy)
    watchdog: WatchdogPolicy = field(default_factory=WatchdogPolicy)
    gateway_processes: int | None = None  # workerd processes (default: one per core)
    gateway_health_port: int = 0  # the gateway supervisor's /healthz and /metrics (`wdl up`: 8794)
    gateway_url: str | None = None  # scheduler alone: where to dispatch
    d1_port: int = 0  # the D1 owner service (`wdl up`: 8795)
    d1_url: str | None = None  # gateway without the D1 service: where a replica is
    objects_port: int = 0  # the Durable Object host (`wdl up`: 8796)
    objects_url: str | None = None  # gateway without the DO host: where one is
    d1_ttl_ms: int = field(default_factory=lambda: int(os.environ.get("WDL_D1_LEASE_TTL_MS")
                                                       or 3000))
    # A tenant's D1 request may run this long (Cloudflare's D1: 30 s per query).
    d1_timeout_ms: int = field(default_factory=lambda: int(
        os.environ.get("WDL_D1_TIMEOUT_MS") or DEFAULT_D1_TIMEOUT_MS))
    # A D1 database may grow to this size (Cloudflare's D1: 10 GB per database).
    d1_max_bytes: int = field(default_factory=lambda: int(
        os.environ.get("WDL_D1_MAX_DATABASE_BYTES") or DEFAULT_D1_MAX_BYTES))
    workflows_port: int = 0  # the workflows engine's API and /healthz (`wdl up`: 8798)
    workflows_url: str | None = None  # gateway without the engine: where it is
    queues_port: int = 0  # the queue service's producer endpoint and /healthz (`wdl up`: 8797)
    queues_url: str | None = None  # gateway without the queue service: where one is
    # The Hyperdrive pooler's port: WDL_HYPERDRIVE_URL's (an operator's setting; `wdl up`
    # defaults to 26432), else 0, a free one (`wdl dev`, tests). Its address is
    # `Platform.hyperdrive.address` (docs/hyperdrive.md).
    hyperdrive_port: int = field(default_factory=lambda: urlsplit(
        os.environ.get("WDL_HYPERDRIVE_URL") or "").port or 0)
    hyperdrive_host: str = "127.0.0.1"
    # The component's /healthz and /metrics, behind the internal token: WDL_HYPERDRIVE_
    # HEALTH_PORT's, else 0, a free one (`wdl dev`, tests); `wdl up` defaults to 8799.
    hyperdrive_health_port: int = field(default_factory=lambda: int(
        os.environ.get("WDL_HYPERDRIVE_HEALTH_PORT") or 0))
    hyperdrive_health_host: str = "127.0.0.1"
    # Where tenants' pooler connections come from (PgBouncer hba's address column).
    hyperdrive_clients: str = field(default_factory=lambda: os.environ.get(
        "WDL_HYPERDRIVE_CLIENTS") or "127.0.0.1/32")
    # Shared by the gateway and the scheduler (WDL_INTERNAL_TOKEN); one per process if unset.
    internal_token: str = field(
        default_factory=lambda: os.environ.get("WDL_INTERNAL_TOKEN") or secrets.token_urlsafe(32))


def _workflows_address(sock: socket.socket | None, url: str | None) -> str:
    if sock is not None:
        host, port = sock.getsockname()[:2]
        return f"{host}:{port}"
    return urlsplit(url).netloc if url else ""


def _kept_token(path: Path, prefix: str) -> str:
    """The token in `path`, created once (mode 0600, in the private data dir)."""
    if not path.exists():
        private_dir(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(prefix + secrets.token_urlsafe(24) + "\n")
    return path.read_text(encoding="ascii").strip()


def dev_admin_token(settings: Settings) -> str:
    """WDL_ADMIN_TOKEN, else the token kept under the data dir (created once, mode 0600)."""
    if settings.admin_token:
        return settings.admin_token
    return _kept_token(settings.data_dir / TOKEN_FILE, "wdl_admin_")


def dev_internal_token(settings: Settings) -> str:
    """WDL_INTERNAL_TOKEN, else the token kept under the data dir (created once, mode
    0600): `wdl health` on the same data dir finds it there (cli/run.py)."""
    return os.environ.get("WDL_INTERNAL_TOKEN") or _kept_token(
        settings.data_dir / INTERNAL_TOKEN_FILE, "wdl_internal_")


def log_partitions(settings: Settings) -> int | None:
    query = parse_qs(urlsplit(settings.event_log_url).query)
    values = query.get("partitions")
    return int(values[0]) if values else None


class Platform:
    def __init__(self, settings: Settings, options: PlatformOptions) -> None:
        unknown = options.components - set(COMPONENTS)
        if unknown:
            raise ValueError(f"unknown components: {sorted(unknown)}")
        if settings.embedded and options.components != frozenset(COMPONENTS) and \
                options.components != {"gateway"}:
            raise ValueError("the embedded projection lives in one process: run all "
                             "components together (`wdl dev`), or configure REDIS_URL")
        if options.components == {"gateway"} and not (options.state_url and options.data_url):
            raise ValueError("the gateway alone needs --state-url and --data-url")
        if "data" in options.components and "state" not in options.components and \
                not options.state_url:
            # Tail consumers are loaded only for workers the state service knows are
            # tailed: without it, `wdl tail` would connect and never see an event.
            raise ValueError("the data service without the state service needs --state-url "
                             "(it reports which workers are tailed to it)")
        self.settings = settings
        self.options = options
        self.api: HttpServer | None = None
        self.state: StateService | None = None
        self.data: DataService | None = None
        self.d1: D1Service | None = None
        self.objects: ObjectsHost | None = None
        self.gateway: Gateway | None = None
        self.gateway_health: HttpServer | None = None
        self.projector_health: HttpServer | None = None
        self._stack = contextlib.AsyncExitStack()
        self._stop_projector = asyncio.Event()
        self._projector: asyncio.Task[None] | None = None
        self._projector_ref: Projector | None = None
        self.scheduler: Scheduler | None = None
        self.scheduler_health: HttpServer | None = None
        self._stop_scheduler = asyncio.Event()
        self._scheduler_task: asyncio.Task[None] | None = None
        self.workflows: Any = None  # services.workflows.service.WorkflowsService
        self.queues: Any = None  # services.queues.service.QueuesService
        self.hyperdrive: Any = None  # services.hyperdrive.service.HyperdriveService
        self.hyperdrive_health: HttpServer | None = None

    def wants(self, name: str) -> bool:
        return name in self.options.components

    def _internal(self, app: Starlette) -> InternalTokenGuard:
        """A health/metrics server's app behind the internal token: like every internal
        endpoint (health checks send it as `Authorization: Bearer`)."""
        return InternalTokenGuard(app, self.options.internal_token)

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        o, s = self.options, self.settings
        state_url = o.state_url
        data_url = o.data_url
        backends: Backends | None = None
        if self.options.components - {"gateway"}:
            if s.embedded:
                # The log, audit, KV, queue, workflow, D1 and Durable Object files of
                # `wdl dev` live here: the platform's user only.
                private_dir(s.data_dir)
            backends = await self._stack.enter_async_context(open_backends(s))
            keyring = load_keyring(dev_key_file=s.data_dir / DEV_KEY_FILE
                                   if s.embedded else None)
            blobs = await self._stack.enter_async_context(open_blob_store(s.blob_url))
            if self.wants("data"):
                self.data = DataService(backends.store, kv_url=s.kv_url, r2_url=s.r2_url,
                                        internal_token=o.internal_token, host=o.data_host,
                                        port=o.data_port,
                                        state_url=None if self.wants("state") else o.state_url)
                await self.data.start()
                self._stack.push_async_callback(self.data.stop)
                data_url = self.data.url
            if self.wants("d1"):
                await self._start_d1(backends)
            if self.wants("api"):
                await self._start_api(backends, keyring, blobs, data_url)
                if self.d1 is not None:
                    # Stopped before the API (and its embedded projector): the D1
                    # owners' lease releases still get their verdicts.
                    self._stack.push_async_callback(self.d1.stop)
            elif self.wants("projector"):
                await self._start_projector(backends)
            if self.wants("state"):
                self.state = StateService(backends.store, blobs, keyring, host=o.state_host,
                                          port=o.state_port, domain=o.domain,
                                          partitions=log_partitions(s), log=backends.log,
                                          internal_token=o.internal_token,
                                          lease_ms=self._lease_ms(),
                                          host_verification=o.host_verification)
                await self.state.start()
                self._stack.push_async_callback(self.state.stop)
                state_url = self.state.url
                if self.data is not None:
                    # One process: the tailed set goes to the state service directly.
                    self.data.interest.sink = self.state.tails.replace
                if self.api is not None:
                    self.api.app.state.ctx.propagate = self.state.leases.propagate
            elif self.api is not None and o.state_url:
                await self._remote_propagate(o.state_url)
            if self.wants("hyperdrive"):
                await self._start_hyperdrive(backends, keyring)
        if self.wants("objects"):
            if state_url is None:
                raise ValueError("the Durable Object host needs the state service (--state-url)")
            await self._start_objects(state_url, backends)
        queues_sock = None
        if self.wants("queues"):
            # Bound before the gateway starts: the gateway is told its address.
            queues_sock = bind(o.gateway_host, o.queues_port)
            self._stack.callback(queues_sock.close)
        workflows_sock = None
        if self.wants("workflows"):
            # Bound before the gateway starts: the gateway is told its address.
            workflows_sock = bind(o.gateway_host, o.workflows_port)
            self._stack.callback(workflows_sock.close)
        if self.wants("gateway"):
            assert state_url is not None
            if data_url is None:
                raise ValueError("the gateway needs the data service (--data-url)")
            self.gateway = Gateway(GatewayOptions(
                urlsplit(state_url).netloc, o.domain, o.internal_token,
                data_address=urlsplit(data_url).netloc,
                egress_allow_loopback=o.egress_allow_loopback,
                d1_address=self.d1.address if self.d1 is not None
                else urlsplit(o.d1_url or "").netloc,
                objects_address=self.objects.address if self.objects is not None
                else urlsplit(o.objects_url or "").netloc,
                workflows_address=_workflows_address(workflows_sock, o.workflows_url),
                queues_address=_workflows_address(queues_sock, o.queues_url),
                hyperdrive_address=self._hyperdrive_address()),
                                   state_url=state_url,
                                   host=o.gateway_host, port=o.gateway_port,
                                   binary=o.workerd_bin, policy=o.recycle,
                                   watchdog=o.watchdog, processes=o.gateway_processes)
            await self.gateway.start()
            self._stack.push_async_callback(self.gateway.stop)
            await self._start_gateway_health(self.gateway)
        if self.wants("scheduler"):
            assert backends is not None
            gateway_url = self.gateway.url if self.gateway is not None else o.gateway_url
            if not gateway_url:
                raise ValueError("the scheduler alone needs --gateway-url")
            await self._start_scheduler(backends, gateway_url)
        if self.wants("workflows"):
            assert backends is not None and workflows_sock is not None
            gateway_url = self.gateway.url if self.gateway is not None else o.gateway_url
            if not gateway_url:
                raise ValueError("the workflows engine alone needs --gateway-url")
            await self._start_workflows(backends, gateway_url, workflows_sock)
        if self.wants("queues"):
            assert backends is not None and queues_sock is not None
            gateway_url = self.gateway.url if self.gateway is not None else o.gateway_url
            if not gateway_url:
                raise ValueError("the queue service alone needs --gateway-url")
            await self._start_queues(backends, gateway_url, queues_sock)

    async def _start_hyperdrive(self, backends: Backends, keyring: Keyring) -> None:
        """PgBouncer supervised from the projected configs. Run with the rest (`wdl dev`,
        `wdl up`) it is skipped, with a warning, where PgBouncer is not installed;
        `wdl up --only hyperdrive` fails instead."""
        from services.hyperdrive.service import HyperdriveOptions, HyperdriveService, find_binary

        binary = find_binary()
        if binary is None:
            if self.options.components == {"hyperdrive"}:
                raise ValueError("PgBouncer is not installed: set PGBOUNCER_BIN (`make "
                                 "services` provisions it from Debian's package)")
            log.warning("hyperdrive: PgBouncer is not installed (PGBOUNCER_BIN); "
                        "Hyperdrive configs are not served")
            return
        self.hyperdrive = HyperdriveService(backends.store, keyring, HyperdriveOptions(
            binary=binary, host=self.options.hyperdrive_host, port=self.options.hyperdrive_port,
            clients=self.options.hyperdrive_clients))
        await self.hyperdrive.start()
        self._stack.push_async_callback(self.hyperdrive.stop)
        from services.hyperdrive.health import health_app

        self.hyperdrive_health = HttpServer(
            self._internal(health_app(self.hyperdrive)),
            host=self.options.hyperdrive_health_host, port=self.options.hyperdrive_health_port,
            name="hyperdrive-health")
        await self.hyperdrive_health.start()
        self._stack.push_async_callback(self.hyperdrive_health.stop)

    def _hyperdrive_address(self) -> str:
        """Where tenants' Hyperdrive connections go: this process's pooler, or (the
        pooler runs elsewhere: `wdl up --only hyperdrive`) WDL_HYPERDRIVE_URL's; "" when
        there is none (a Hyperdrive binding's connect() is then refused)."""
        if self.hyperdrive is not None:
            return str(self.hyperdrive.address)
        if self.wants("hyperdrive"):
            return ""  # meant to run here, but PgBouncer is missing (warned at start)
        url = urlsplit(os.environ.get("WDL_HYPERDRIVE_URL") or "")
        return f"{url.hostname}:{url.port or 5432}" if url.hostname else ""

    def _lease_ms(self) -> int:
        """Gateway freshness leases: on where this process's control API propagates
        (docs/dataplane.md); a state service of its own grants them only when told
        to (WDL_GATEWAY_LEASE_MS), because every API must then have --state-url."""
        configured = os.environ.get("WDL_GATEWAY_LEASE_MS")
        if configured:
            return max(0, int(configured))
        return 1000 if self.wants("api") else 0

    async def _remote_propagate(self, state_url: str) -> None:
        from services.api.propagate import RemotePropagator

        assert self.api is not None
        propagator = RemotePropagator(state_url, self.options.internal_token,
                                      max_lease_ms=self._lease_ms() or 1000)
        await propagator.start()
        self._stack.push_async_callback(propagator.stop)
        self.api.app.state.ctx.propagate = propagator

    async def _start_queues(self, backends: Backends, gateway_url: str,
                            sock: socket.socket) -> None:
        from services.queues.__main__ import queue_log_url
        from services.queues.bounds import QueueBounds
        from services.queues.invoke import GatewayQueueInvoker
        from services.queues.service import QueuesService
        from services.queues.store import open_queue_log

        bounds = QueueBounds.from_env()  # WDL_QUEUE_* (docs/queues.md "Bounds")
        invoker = GatewayQueueInvoker(gateway_url, self.options.internal_token,
                                      timeout_s=bounds.invoke_timeout_s,
                                      connections=bounds.capacity)
        await invoker.start()
        self._stack.push_async_callback(invoker.stop)
        self.queues = QueuesService(log=open_queue_log(queue_log_url(self.settings)),
                                    reader=ProjectionReader(backends.store), invoker=invoker,
                                    internal_token=self.options.internal_token, sock=sock,
                                    bounds=bounds)
        await self.queues.start()
        self._stack.push_async_callback(self.queues.stop)
        if self.api is not None:  # the control API's dead-letter routes (api/routes/queues.py)
            self.api.app.state.queues = (self.queues.url, self.options.internal_token)

    async def _start_workflows(self, backends: Backends, gateway_url: str,
                               sock: socket.socket) -> None:
        from services.workflows.__main__ import workflow_log_url
        from services.workflows.invoke import GatewayInvoker
        from services.workflows.service import WorkflowsService
        from services.workflows.store import open_workflow_store

        invoker = GatewayInvoker(gateway_url, self.options.internal_token)
        await invoker.start()
        self._stack.push_async_callback(invoker.stop)
        holder = os.environ.get("WDL_WORKFLOWS_ID") or f"{socket.gethostname()}-{os.getpid()}"
        clock = SystemClock()
        self.workflows = WorkflowsService(
            store=open_workflow_store(workflow_log_url(self.settings)), invoker=invoker,
            leases=LeaseClient(backends.log, ProjectionReader(backends.store), clock,
                               actor=f"workflows:{holder}"),
            holder=holder, internal_token=self.options.internal_token, sock=sock,
            ttl_ms=int(os.environ.get("WDL_WORKFLOWS_TTL_MS", "10000")))
        await self.workflows.start()
        self._stack.push_async_callback(self.workflows.stop)
        if self.api is not None:  # the control API's workflows routes (api/routes/workflows.py)
            self.api.app.state.workflows = (self.workflows.url, self.options.internal_token)

    async def _start_objects(self, state_url: str, backends: Backends | None) -> None:
        """The Durable Object host; object storage under WDL_OBJECTS_DIR, by default
        `objects/` of the data dir (`.wdl/dev/objects` for `wdl dev`)."""
        root = Path(os.environ.get("WDL_OBJECTS_DIR") or self.settings.data_dir / "objects")
        if not os.environ.get("WDL_OBJECTS_DIR"):
            private_dir(self.settings.data_dir)  # tenant data under it: no one else's
        self.objects = ObjectsHost(ObjectsOptions(
            root, urlsplit(state_url).netloc, self.options.internal_token,
            host=self.options.data_host, port=self.options.objects_port,
            binary=self.options.workerd_bin,
            egress_allow_loopback=self.options.egress_allow_loopback,
            ttl_ms=int(os.environ.get("WDL_OBJECTS_LEASE_TTL_MS") or 10_000),
            data_address=urlsplit(self.data.url if self.data is not None
                                  else self.options.data_url or "").netloc,
            d1_address=self.d1.address if self.d1 is not None
            else urlsplit(self.options.d1_url or "").netloc,
            hyperdrive_address=self._hyperdrive_address()),
            leases=None if backends is None else LeaseClient(
                backends.log, ProjectionReader(backends.store), SystemClock(),
                actor="objects"))
        await self.objects.start()
        self._stack.push_async_callback(self.objects.stop)

    async def _start_d1(self, backends: Backends) -> None:
        """The D1 owner service; its files live under WDL_D1_DIR (shared by every
        replica), by default `d1/` of the data dir (`.wdl/dev/d1` for `wdl dev`)."""
        root = Path(os.environ.get("WDL_D1_DIR") or self.settings.data_dir / "d1")
        if not os.environ.get("WDL_D1_DIR"):
            private_dir(self.settings.data_dir)  # tenant data under it: no one else's
        self.d1 = D1Service(backends.log, backends.store, root,
                            internal_token=self.options.internal_token,
                            host=self.options.data_host, port=self.options.d1_port,
                            ttl_ms=self.options.d1_ttl_ms,
                            timeout_ms=self.options.d1_timeout_ms,
                            max_bytes=self.options.d1_max_bytes)
        await self.d1.start()
        self._stack.push_async_callback(self.d1.stop)

    async def _start_gateway_health(self, gateway: Gateway) -> None:
        async def health(request: Request) -> JSONResponse:
            live = gateway.instances()
            return JSONResponse({
                "ok": bool(live), "processes": [
                    {"slot": i.slot, "instance": i.name, "pid": i.process.pid} for i in live],
                "incidents": [{"kind": x.kind, "instance": x.instance, "detail": x.detail,
                               "at": x.at} for x in gateway.incidents[-20:]]},
                status_code=200 if live else 503)

        async def metrics(request: Request) -> Response:
            return Response(generate_latest(gateway.registry), media_type=CONTENT_TYPE_LATEST)

        self.gateway_health = HttpServer(
            self._internal(Starlette(routes=[Route("/healthz", health),
                                             Route("/metrics", metrics)])),
            host="127.0.0.1", port=self.options.gateway_health_port, name="gateway-health")
        await self.gateway_health.start()
        self._stack.push_async_callback(self.gateway_health.stop)

    async def _start_scheduler(self, backends: Backends, gateway_url: str) -> None:
        dispatcher = GatewayDispatcher(gateway_url, self.options.internal_token)
        await dispatcher.start()
        self._stack.push_async_callback(dispatcher.stop)
        reader = ProjectionReader(backends.store)
        holder = os.environ.get("WDL_SCHEDULER_ID") or f"{socket.gethostname()}-{os.getpid()}"
        clock = SystemClock()
        shares = namespace_shares(reader)
        self.scheduler = Scheduler(
            leases=LeaseClient(backends.log, reader, clock, actor=f"scheduler:{holder}"),
            reader=reader, dispatcher=dispatcher, clock=clock, holder=holder,
            cron_runs=shares.of("cron_runs"), refresh_share=shares.refresh)
        self._scheduler_task = asyncio.create_task(self.scheduler.run(self._stop_scheduler),
                                                   name="wdl-scheduler")

        async def stop_scheduler() -> None:
            self._stop_scheduler.set()
            if self._scheduler_task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await self._scheduler_task

        self._stack.push_async_callback(stop_scheduler)
        scheduler = self.scheduler

        async def health(request: Request) -> JSONResponse:
            task = self._scheduler_task
            alive = task is not None and not task.done()
            return JSONResponse({"ok": alive, "holder": scheduler.holder,
                                 "leading": scheduler.leading},
                                status_code=200 if alive else 503)

        self.scheduler_health = HttpServer(self._internal(Starlette(routes=[
                                               Route("/healthz", health)])),
                                           host="127.0.0.1",
                                           port=self.options.scheduler_health_port,
                                           name="scheduler-health")
        await self.scheduler_health.start()
        self._stack.push_async_callback(self.scheduler_health.stop)

    async def _start_api(self, backends: Backends, keyring: Keyring, blobs: BlobStore,
                         data_url: str | None = None) -> None:
        from services.api.app import create_app

        settings = self.settings
        if settings.embedded:
            settings = replace(settings, admin_token=dev_admin_token(settings))
        kv, r2 = await self._data_stores()
        app = create_app(settings, backends, keyring, blobs,
                         run_projector=self.wants("projector"), kv=kv, r2=r2,
                         data_url=data_url, internal_token=self.options.internal_token,
                         d1_url=self.d1.url if self.d1 is not None else self.options.d1_url,
                         host_policy=HostPolicy(domain=self.options.domain,
                                                verification=self.options.host_verification,
                                                resolver=self.options.dns_resolver))
        self.api = HttpServer(app, host=self.options.api_host, port=self.options.api_port,
                              name="api", lifespan="on")
        await self.api.start()
        self._stack.push_async_callback(self.api.stop)

    async def _data_stores(self) -> tuple[Any, Any]:
        """The tenant data stores for the API: the data service's, or opened here."""
        if self.data is not None:
            return self.data.kv, self.data.r2
        from services.kv.factory import open_kv_store
        from services.r2.factory import open_r2_store

        kv = await self._stack.enter_async_context(open_kv_store(self.settings.kv_url))
        r2 = await self._stack.enter_async_context(open_r2_store(self.settings.r2_url))
        return kv, r2

    async def _start_projector(self, backends: Backends) -> None:
        projector = Projector(backends.log, backends.store, backends.audit)
        self._projector_ref = projector
        self._projector = asyncio.create_task(projector.run(self._stop_projector),
                                              name="wdl-projector")
        self._stack.push_async_callback(self._stop_projector_task)

        async def health(request: Request) -> JSONResponse:
            task = self._projector
            alive = task is not None and not task.done()
            return JSONResponse({"ok": alive, "events": projector.events,
                                 "positions": {str(p): o for p, o in
                                               projector.positions().items()}},
                                status_code=200 if alive else 503)

        self.projector_health = HttpServer(self._internal(Starlette(routes=[
                                               Route("/healthz", health)])),
                                           host="127.0.0.1",
                                           port=self.options.projector_health_port,
                                           name="projector-health")
        await self.projector_health.start()
        self._stack.push_async_callback(self.projector_health.stop)

    async def _stop_projector_task(self) -> None:
        self._stop_projector.set()
        task = self._projector
        if task is None:
            return
        # The projector writes what it has read before it returns (bounded by its sinks'
        # flush); one that does not return within PROJECTOR_STOP_S is cancelled, with
        # what it was waiting for in the log, rather than hold the whole stop forever.
        done, _ = await asyncio.wait({task}, timeout=PROJECTOR_STOP_S)
        if not done:
            log.error("projector did not stop within %.0f s; cancelling it. Pending "
                      "tasks:\n%s", PROJECTOR_STOP_S, task_stacks())
            task.cancel()
            await asyncio.wait({task}, timeout=PROJECTOR_STOP_S)
        if task.done() and not task.cancelled():
            task.result()  # a projector that failed says so

    async def wait(self) -> None:
        """Until a component fails on its own (a normal stop goes through `stop()`)."""
        waits: list[Awaitable[Any]] = []
        if self.api is not None:
            waits.append(self.api.wait())
        if self._projector is not None:
            waits.append(asyncio.shield(self._projector))
        if self._scheduler_task is not None:
            waits.append(asyncio.shield(self._scheduler_task))
        if self.workflows is not None:
            waits.append(self.workflows.wait())
        if self.queues is not None:
            waits.append(self.queues.wait())
        if not waits:
            await asyncio.Event().wait()
        done, pending = await asyncio.wait([asyncio.ensure_future(w) for w in waits],
                                           return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in done:
            task.result()

    async def stop(self) -> None:
        async with report_stalls("platform stop"):
            await self._stack.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()


def summary(platform: Platform, admin_token: str | None) -> list[str]:
    lines: list[str] = []
    if platform.gateway is not None:
        lines.append(f"gateway      {platform.gateway.url}  "
                     f"(https://<namespace>.{platform.options.domain}/<worker>/...)")
    if platform.gateway_health is not None and platform.gateway is not None:
        lines.append(f"supervisor   {platform.gateway_health.url}/healthz, /metrics  "
                     f"({platform.gateway.processes} workerd processes, watchdog "
                     f"{platform.gateway.watchdog.hang_timeout:.1f} s)")
    if platform.api is not None:
        lines.append(f"control API  {platform.api.url}")
    if platform.state is not None:
        lines.append(f"state        {platform.state.url}")
    if platform.data is not None:
        lines.append(f"data service {platform.data.url}  (KV, R2)")
    if platform.objects is not None:
        objects = platform.objects
        lines.append(f"objects      {objects.url}  (this host: {objects.private_address}, "
                     f"{objects.options.storage_dir})")
    if platform.d1 is not None:
        lines.append(f"d1           {platform.d1.url}  ({platform.d1.root})")
    if platform.scheduler is not None:
        lines.append(f"scheduler    {platform.scheduler.holder} (lease `scheduler`)")
    if platform.workflows is not None:
        lines.append(f"workflows    {platform.workflows.url}/healthz  "
                     f"({platform.workflows.holder}, lease `workflows`)")
    if platform.queues is not None:
        lines.append(f"queues       {platform.queues.url}/healthz")
    if platform.hyperdrive is not None:
        lines.append(f"hyperdrive   PgBouncer on {platform.hyperdrive.address}  "
                     "(tenants reach it as <config id>.hyperdrive.wdl:5432)")
        if platform.hyperdrive_health is not None:
            lines.append(f"             {platform.hyperdrive_health.url}/healthz, /metrics")
    elif platform.wants("hyperdrive"):
        lines.append("hyperdrive   not served: PgBouncer is not installed (PGBOUNCER_BIN)")
    if platform.projector_health is not None:
        lines.append(f"projector    {platform.projector_health.url}/healthz")
    if platform.settings.embedded and platform.options.components - {"gateway"}:
        lines.append(f"data         {platform.settings.data_dir}")
    if admin_token:
        lines.append(f"admin token  {admin_token}")
    return lines

