"""The Hyperdrive component: PgBouncer supervised from the projected configs.

`HyperdriveService(store, keyring, options)` renders PgBouncer's files from the
`hyperdrive` projection (opening each config's sealed origin and password with the
keyring), starts PgBouncer, and re-renders every `poll_s`: when the files change it
writes them (0600) and sends SIGHUP, PgBouncer's reload. A PgBouncer that dies is
started again. Nothing here logs a credential: messages name config ids only.

Metrics (`self.metrics`, docs/metrics.md "Hyperdrive pooler"): the sync sets the
configs' gauges and counts reloads and restarts; a task of its own polls PgBouncer's
admin console every `stats_s` (services/hyperdrive/console.py, bounded by a timeout), so
a slow console never delays a sync.

PgBouncer refuses to run as root: as root it runs as `run_as` (default `postgres`,
which the PostgreSQL package creates), and its files live in a directory of that
user's, outside the platform's private (0700, root's) data dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from eventlog.bindings.hyperdrive import pooler_user
from eventlog.events import SealedSecret
from projections import keys
from projections.reader import ProjectionReader
from projections.store import ProjectionStore
from services.crypto import Keyring, SecretContext, SecretCryptoError
from services.hyperdrive.console import Console
from services.hyperdrive.metrics import HyperdriveMetrics
from services.hyperdrive.origin import OriginError, parse_origin
from services.hyperdrive.pgbouncer import ADMIN_USER, PoolConfig, PoolerSettings, Rendered, render

log = logging.getLogger("wdl.hyperdrive")
_decode = msgspec.json.Decoder()


def find_binary() -> str | None:
    """PGBOUNCER_BIN, else the harness's unpacked package (harness/services.py), if any."""
    configured = os.environ.get("PGBOUNCER_BIN")
    if configured:
        return configured
    cache = Path(os.environ.get("WDL_CACHE") or Path.home() / ".cache" / "wdl")
    exe = cache / "pgbouncer" / "root" / "usr" / "sbin" / "pgbouncer"
    return str(exe) if exe.exists() else None


@dataclass(frozen=True)
class HyperdriveOptions:
    binary: str = field(default_factory=lambda: find_binary() or "")
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port, chosen at start
    workdir: str | None = None  # default: a fresh directory (see the module doc)
    run_as: str = "postgres"
    clients: str = "127.0.0.1/32"
    default_pool_size: int = field(default_factory=lambda: int(
        os.environ.get("WDL_HYPERDRIVE_POOL_SIZE") or 5))
    namespace_connections: int = field(default_factory=lambda: int(
        os.environ.get("WDL_HYPERDRIVE_NAMESPACE_CONNECTIONS") or 20))
    poll_s: float = 0.5
    # How often the admin console is read for the pool metrics.
    stats_s: float = field(default_factory=lambda: float(
        os.environ.get("WDL_HYPERDRIVE_STATS_S") or 5))


def library_path(binary: str) -> str | None:
    """The libraries `dpkg -x` put beside an unpacked binary (libc-ares), if any."""
    lib = Path(binary).resolve().parents[1] / "lib" / "x86_64-linux-gnu"  # <root>/usr/lib/…
    return str(lib) if lib.is_dir() else None


def _die_with_parent() -> None:
    """prctl(PR_SET_PDEATHSIG, SIGTERM) in the child, after its user switch (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class HyperdriveService:
    def __init__(self, store: ProjectionStore, keyring: Keyring,
                 options: HyperdriveOptions | None = None) -> None:
        self.store = store
        self.keyring = keyring
        self.options = options or HyperdriveOptions()
        self.port = 0
        self.reloads = 0
        self.restarts = 0
        self.metrics = HyperdriveMetrics()
        self._namespace_of: dict[str, str] = {}  # database alias hd_<id> -> its namespace
        self._console: Console | None = None
        self._stats_task: asyncio.Task[None] | None = None
        self.skipped: set[str] = set()  # config ids whose credentials did not open
        self._user = self.options.run_as if os.geteuid() == 0 else None
        self._dir: Path | None = None
        self._own_dir = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._rendered: Rendered | None = None
        self._task: asyncio.Task[None] | None = None
        self._settings: PoolerSettings | None = None

    @property
    def address(self) -> str:
        """`host:port` of the pooler: where the egress sends `<id>.hyperdrive.wdl:5432`."""
        return f"{self.options.host}:{self.port}"

    @property
    def workdir(self) -> Path:
        assert self._dir is not None
        return self._dir

    async def start(self) -> None:
        o = self.options
        if not o.binary or not await asyncio.to_thread(os.path.exists, o.binary):
            raise RuntimeError("PgBouncer is not installed: set PGBOUNCER_BIN (`make "
                               "services` provisions it from Debian's package)")
        self.port = o.port or _free_port(o.host)
        if o.workdir:
            self._dir = Path(o.workdir)
            self._dir.mkdir(parents=True, exist_ok=True)
        else:
            self._dir = Path(tempfile.mkdtemp(prefix="wdl-hyperdrive-"))
            self._own_dir = True
        os.chmod(self._dir, 0o700)
        if self._user:
            shutil.chown(self._dir, self._user, self._group())
        self._settings = PoolerSettings(
            listen_host=o.host, listen_port=self.port, workdir=str(self._dir),
            admin_password=secrets.token_urlsafe(24), clients=o.clients,
            default_pool_size=o.default_pool_size,
            namespace_connections=o.namespace_connections)
        await self.sync()
        self._spawn()
        await self._wait_listening()
        self._task = asyncio.create_task(self._watch(), name="hyperdrive-watch")
        self._console = Console(self.port, *self.admin)
        self._stats_task = asyncio.create_task(self._poll_stats(), name="hyperdrive-stats")

    async def stop(self) -> None:
        for task in (self._task, self._stats_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._console is not None:
            await self._console.close()
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()  # SIGTERM: PgBouncer's immediate shutdown
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        if self._own_dir and self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    async def __aenter__(self) -> HyperdriveService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def admin(self) -> tuple[str, str]:
        """(user, password) of PgBouncer's admin console (SHOW POOLS), for metrics."""
        assert self._settings is not None
        return ADMIN_USER, self._settings.admin_password

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def served(self) -> int:
        """Configs the pooler serves now."""
        return len(self._namespace_of)

    @property
    def console_failing(self) -> bool:
        """The last read of the admin console failed (pool metrics are stale)."""
        return self._console is not None and self._console.failing

    async def listening(self, timeout: float = 1.0) -> bool:
        """PgBouncer accepts a connection on the loopback address the console uses."""
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.port), timeout)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    # --- rendering ------------------------------------------------------------------

    async def configs(self) -> tuple[list[PoolConfig], dict[str, int]]:
        reader = ProjectionReader(self.store)
        raw = await self.store.hgetall(keys.HYPERDRIVE)
        out: list[PoolConfig] = []
        limits: dict[str, int] = {}
        skipped = set()
        for cid, text in sorted(raw.items()):
            doc = _decode.decode(text)
            ns = doc["namespace"]
            try:
                origin = parse_origin(self._open(SecretContext(
                    ns, None, f"hyperdrive-origin/{cid}"), doc["sealed_origin"]))
                password = self._open(SecretContext(ns, None, f"hyperdrive/{cid}"),
                                      doc["sealed_password"])
            except (SecretCryptoError, msgspec.ValidationError, OriginError,
                    UnicodeDecodeError, KeyError) as exc:
                # Left out (its tenants get `login rejected`), never fatal for the rest.
                skipped.add(cid)
                if cid not in self.skipped:
                    log.error("hyperdrive config %s of %s cannot be opened (%s); not served",
                              cid, ns, getattr(exc, "code", type(exc).__name__))
                continue
            out.append(PoolConfig(config_id=cid, namespace=ns, origin=origin,
                                  password=password, pool_size=int(doc.get("pool_size") or 0)))
            if ns not in limits:
                ns_doc = await reader.namespace(ns) or {}
                limits[ns] = int((ns_doc.get("limits") or {}).get("hyperdrive_connections")
                                 or 0)
        self.skipped = skipped
        return out, limits

    def _open(self, context: SecretContext, doc: Any) -> str:
        return self.keyring.open(context, msgspec.convert(doc, SealedSecret)).decode("utf-8")

    async def sync(self) -> bool:
        """Render from the projection; write and reload if anything changed."""
        assert self._settings is not None
        configs, limits = await self.configs()
        self._namespace_of = {pooler_user(c.config_id): c.namespace for c in configs}
        self.metrics.configs.set(len(configs))
        self.metrics.unopened.set(len(self.skipped))
        rendered = render(configs, limits, self._settings)
        if rendered == self._rendered:
            return False
        for name, text in (("userlist.txt", rendered.users), ("hba.conf", rendered.hba),
                           ("pgbouncer.ini", rendered.ini)):
            self._write(name, text)
        first = self._rendered is None
        self._rendered = rendered
        if not first and self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGHUP)
            self.reloads += 1
            self.metrics.reloads.inc()
            log.info("pooler reloaded: %d configs", len(configs))
        return True

    def _write(self, name: str, text: str) -> None:
        path = self.workdir / name
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        if self._user:
            shutil.chown(tmp, self._user, self._group())
        os.replace(tmp, path)  # PgBouncer never reads half a file

    def _group(self) -> str | int:
        assert self._user is not None
        return pwd.getpwnam(self._user).pw_gid

    # --- the process ----------------------------------------------------------------

    def _executable(self) -> tuple[str, str | None]:
        """(binary, library dir) the run-as user can reach. An unpacked package in root's
        cache (~/.cache is 0700) is copied into the pooler's own directory first."""
        binary, lib = self.options.binary, library_path(self.options.binary)
        if not self._user or binary.startswith("/usr/"):
            return binary, lib
        local = self.workdir / "bin"
        if not (local / "pgbouncer").exists():
            local.mkdir(exist_ok=True)
            shutil.copy2(binary, local / "pgbouncer")
            if lib:
                shutil.copytree(lib, local / "lib", dirs_exist_ok=True)
            for path in (local, *local.rglob("*")):
                shutil.chown(path, self._user, self._group())
        return str(local / "pgbouncer"), str(local / "lib") if lib else None

    def _spawn(self) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        binary, lib = self._executable()
        if lib:
            env["LD_LIBRARY_PATH"] = lib
        kwargs: dict[str, Any] = {}
        if self._user:
            kwargs["user"] = self._user
            kwargs["group"] = self._group()
            kwargs["extra_groups"] = []
        # What PgBouncer says before its logfile is open (a missing library, a bad ini).
        with open(self.workdir / "stderr.log", "ab") as early:
            self._proc = subprocess.Popen(
                [binary, str(self.workdir / "pgbouncer.ini")], env=env,
                stdin=subprocess.DEVNULL, stdout=early, stderr=early,
                # In the platform's process group (a group kill of `wdl dev` reaches it)
                # and gone when the platform process dies, however it dies.
                preexec_fn=_die_with_parent, **kwargs)

    async def _wait_listening(self, timeout: float = 15.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"PgBouncer exited ({self._proc.returncode}); see "
                                   f"{self.workdir / 'stderr.log'} and pgbouncer.log")
            try:
                _, writer = await asyncio.open_connection(self.options.host, self.port)
                writer.close()
                return
            except OSError:
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError("PgBouncer did not listen in time") from None
                await asyncio.sleep(0.05)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.options.poll_s)
            try:
                if self._proc is not None and self._proc.poll() is not None:
                    log.error("PgBouncer exited (%s); starting it again", self._proc.returncode)
                    self._spawn()
                    self.restarts += 1
                    self.metrics.restarts.inc()
                    await self._wait_listening()
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("hyperdrive: sync failed; retrying")

    async def _poll_stats(self) -> None:
        assert self._console is not None
        while True:
            await self.poll_stats()
            await asyncio.sleep(self.options.stats_s)

    async def poll_stats(self) -> bool:
        """Read the console once into the metrics; False when it did not answer."""
        assert self._console is not None
        try:
            got = await self._console.poll()
            if got is None:
                self.metrics.console_up.set(0)
                self.metrics.console_failures.inc()
                return False
            self.metrics.observe(*got, self._namespace_of)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("hyperdrive: reading the pool metrics failed")
            return False
        self.metrics.console_up.set(1)
        return True
