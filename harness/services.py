"""Provision and run the real servers on 127.0.0.1 without a Docker engine.

Each server comes from a package registry this machine reaches and is cached
under ``$WDL_CACHE`` (default ``~/.cache/wdl``) so later runs and fresh clones
skip the download/build:

- Kafka 4.x (KRaft, combined broker+controller) from Maven Central jars,
- Redis 7 and PostgreSQL 15 from Debian packages,
- versitygw (an S3 gateway that checks SigV4 signatures) via ``go install``,
- workerd from npm (pinned in ``workerd/package.json``),
- PgBouncer from its Debian package (``apt-get download`` + ``dpkg -x``; the Hyperdrive
  component runs it).

Runtime state (data directories, pid files, logs) lives in ``.wdl/`` of the
checkout. Health is established by speaking each protocol, never by sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.endpoints import ROOT, SERVICES_ENV, parse_env_file

STATE = ROOT / ".wdl"
CACHE = Path(os.environ.get("WDL_CACHE", Path.home() / ".cache" / "wdl"))
HOST = "127.0.0.1"

KAFKA_PORT = int(os.environ.get("WDL_KAFKA_PORT", "29092"))
KAFKA_CONTROLLER_PORT = KAFKA_PORT + 1
REDIS_PORT = int(os.environ.get("WDL_REDIS_PORT", "26379"))
POSTGRES_PORT = int(os.environ.get("WDL_POSTGRES_PORT", "25432"))
S3_PORT = int(os.environ.get("WDL_S3_PORT", "27070"))

VERSITYGW_MODULE = "github.com/versity/versitygw/cmd/versitygw"
VERSITYGW_VERSION = "v1.8.0"
POSTGRES_MAJOR = "15"


class ProvisionError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[services] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, text=True, capture_output=True, **kw)  # type: ignore[call-overload]
    if res.returncode != 0:
        raise ProvisionError(
            f"command failed ({res.returncode}): {' '.join(cmd)}\n{res.stdout}\n{res.stderr}"
        )
    return res  # type: ignore[no-any-return]


def wait_until(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    raise ProvisionError(f"{what} did not become healthy within {timeout:.0f}s")


_apt_updated = False


def apt_install(*packages: str) -> None:
    global _apt_updated
    if os.geteuid() != 0:
        raise ProvisionError(
            f"missing {' '.join(packages)}; install them with apt-get (needs root)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        log("apt-get update")
        run(["apt-get", "update", "-qq"], env=env)
        _apt_updated = True
    log(f"apt-get install {' '.join(packages)}")
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], env=env)


# --------------------------------------------------------------------------- processes


@dataclass
class Managed:
    """A server process the harness started, tracked by a pid file in .wdl/."""

    name: str

    @property
    def dir(self) -> Path:
        return STATE / self.name

    @property
    def pidfile(self) -> Path:
        return STATE / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return STATE / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def spawn(self, cmd: list[str], *, env: dict[str, str] | None = None,
              user: str | None = None) -> int:
        STATE.mkdir(parents=True, exist_ok=True)
        out = open(self.logfile, "ab")  # noqa: SIM115 - handed to the child
        kwargs: dict[str, object] = {}
        if user is not None:
            kwargs["user"] = user
        # A new session keeps the server alive after `make` exits and out of
        # reach of signals sent to the caller's process group.
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env, **kwargs,  # type: ignore[call-overload]
        )
        out.close()
        self.pidfile.write_text(str(proc.pid))
        return int(proc.pid)

    def healthy(self) -> bool:
        raise NotImplementedError

    def running_healthy(self) -> bool:
        """True if our process answers; a stale or unhealthy one is stopped first."""
        if self.pid() is None:
            return False
        if self.healthy():
            return True
        log(f"{self.name} is running but not healthy; restarting it")
        self.terminate()
        return False

    def terminate(self, timeout: float = 20.0) -> None:
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        self.pidfile.unlink(missing_ok=True)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def _alive(pid: int) -> bool:
    try:
        # Reap our own children so they don't linger as zombies.
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --------------------------------------------------------------------------- Kafka


class Kafka(Managed):
    def __init__(self) -> None:
        super().__init__("kafka")

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{KAFKA_PORT}"

    def jars(self) -> Path:
        pom = ROOT / "harness" / "kafka" / "pom.xml"
        digest = _file_digest(pom)
        dest = CACHE / "kafka" / digest
        if (dest / ".complete").exists():
            return dest
        log("resolving Kafka jars from Maven Central")
        if shutil.which("mvn") is None:
            apt_install("maven")
        tmp = dest.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        run(["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
             f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"])
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
        (dest / ".complete").touch()
        return dest

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            apt_install("openjdk-17-jre-headless")
            java = shutil.which("java")
        assert java is not None
        return java

    def write_config(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        props = self.dir / "server.properties"
        props.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{HOST}:{KAFKA_CONTROLLER_PORT}",
            f"listeners=PLAINTEXT://{HOST}:{KAFKA_PORT},CONTROLLER://{HOST}:{KAFKA_CONTROLLER_PORT}",
            f"advertised.listeners=PLAINTEXT://{HOST}:{KAFKA_PORT}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={self.dir / 'data'}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=4",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "log.retention.hours=-1",
            "",
        ]))
        (self.dir / "log4j2.properties").write_text("\n".join([
            "status = warn",
            "appender.console.type = Console",
            "appender.console.name = STDOUT",
            "appender.console.layout.type = PatternLayout",
            "appender.console.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = WARN",
            "rootLogger.appenderRef.stdout.ref = STDOUT",
            "",
        ]))
        return props

    def start(self) -> None:
        if self.running_healthy():
            return
        jars = self.jars()
        java = self._java()
        props = self.write_config()
        cp = f"{jars}/*"
        data = self.dir / "data"
        if not (data / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            log(f"formatting Kafka storage (cluster {cluster_id})")
            run([java, "-cp", cp, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                 "-c", str(props), "--ignore-formatted"])
        log(f"starting Kafka on {self.bootstrap}")
        self.spawn([java, "-Xms256m", "-Xmx768m", "-XX:+UseG1GC",
                    f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
                    "-cp", cp, "kafka.Kafka", str(props)])
        try:
            wait_until(self.healthy, "Kafka", 90)
        except ProvisionError as exc:
            raise ProvisionError(f"{exc}\n{self.tail()}") from None

    def healthy(self) -> bool:
        return asyncio.run(_kafka_ready(self.bootstrap))


async def _kafka_ready(bootstrap: str) -> bool:
    """Ready means the broker answers metadata AND the controller has elected it."""
    import logging

    from aiokafka.admin import AIOKafkaAdminClient

    # Connection refusals are the expected answer while the broker boots.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    try:
        await asyncio.wait_for(admin.start(), 3)
        cluster = await asyncio.wait_for(admin.describe_cluster(), 3)
        return bool(cluster.get("brokers")) and cluster.get("controller_id", -1) != -1
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 3)


# --------------------------------------------------------------------------- Redis


class Redis(Managed):
    def __init__(self) -> None:
        super().__init__("redis")

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{REDIS_PORT}/0"

    def start(self) -> None:
        if self.running_healthy():
            return
        binary = shutil.which("redis-server")
        if binary is None:
            apt_install("redis-server")
            binary = shutil.which("redis-server")
        assert binary is not None
        self.dir.mkdir(parents=True, exist_ok=True)
        log(f"starting Redis on {HOST}:{REDIS_PORT}")
        self.spawn([binary, "--bind", HOST, "--port", str(REDIS_PORT),
                    "--dir", str(self.dir), "--appendonly", "yes", "--save", "",
                    "--protected-mode", "yes", "--daemonize", "no"])
        try:
            wait_until(self.healthy, "Redis", 30)
        except ProvisionError as exc:
            raise ProvisionError(f"{exc}\n{self.tail()}") from None

    def healthy(self) -> bool:
        import redis

        try:
            client = redis.Redis(host=HOST, port=REDIS_PORT, socket_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False


# --------------------------------------------------------------------------- PostgreSQL


class Postgres(Managed):
    user = "wdl"
    password = "wdl"
    database = "wdl"

    def __init__(self) -> None:
        super().__init__("postgres")

    @property
    def url(self) -> str:
        return (f"postgresql://{self.user}:{self.password}@{HOST}:{POSTGRES_PORT}/"
                f"{self.database}")

    def bindir(self) -> Path:
        candidate = Path(f"/usr/lib/postgresql/{POSTGRES_MAJOR}/bin")
        if not (candidate / "postgres").exists():
            apt_install(f"postgresql-{POSTGRES_MAJOR}")
        if not (candidate / "postgres").exists():
            raise ProvisionError(f"PostgreSQL {POSTGRES_MAJOR} binaries not found in {candidate}")
        return candidate

    def _as_owner(self) -> str | None:
        # PostgreSQL refuses to run as root; Debian's package creates `postgres`.
        return "postgres" if os.geteuid() == 0 else None

    def start(self) -> None:
        if self.running_healthy():
            return
        bindir = self.bindir()
        data = self.dir / "data"
        user = self._as_owner()
        if not (data / "PG_VERSION").exists():
            log("initialising PostgreSQL data directory")
            shutil.rmtree(data, ignore_errors=True)
            data.mkdir(parents=True)
            if user:
                shutil.chown(self.dir, user)
                shutil.chown(data, user)
            pwfile = self.dir / "pwfile"
            pwfile.write_text(self.password + "\n")
            if user:
                shutil.chown(pwfile, user)
            run([str(bindir / "initdb"), "-D", str(data), "-U", self.user,
                 f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
                 "--locale=C.UTF-8"], user=user)
            pwfile.unlink()
        log(f"starting PostgreSQL on {HOST}:{POSTGRES_PORT}")
        self.spawn([str(bindir / "postgres"), "-D", str(data), "-h", HOST,
                    "-p", str(POSTGRES_PORT), "-k", str(data),
                    "-c", "max_connections=200", "-c", "fsync=on",
                    "-c", "shared_buffers=128MB"], user=user)
        try:
            wait_until(self.healthy, "PostgreSQL", 60)
        except ProvisionError as exc:
            raise ProvisionError(f"{exc}\n{self.tail()}") from None

    def healthy(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(
                host=HOST, port=POSTGRES_PORT, user=self.user, password=self.password,
                dbname="postgres", connect_timeout=2,
            ) as conn:
                conn.autocommit = True
                row = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
                ).fetchone()
                if row is None:
                    conn.execute(f'CREATE DATABASE "{self.database}"')
                return True
        except Exception:
            return False

    def terminate(self, timeout: float = 20.0) -> None:
        # SIGTERM is PostgreSQL's "smart" shutdown, which waits for clients; use fast.
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGINT)
        super().terminate(timeout)


# --------------------------------------------------------------------------- S3 (versitygw)


class S3(Managed):
    def __init__(self, access_key: str, secret_key: str) -> None:
        super().__init__("s3")
        self.access_key = access_key
        self.secret_key = secret_key

    @property
    def url(self) -> str:
        return f"http://{HOST}:{S3_PORT}"

    def binary(self) -> Path:
        dest = CACHE / "go" / f"versitygw-{VERSITYGW_VERSION}"
        exe = dest / "versitygw"
        if exe.exists():
            return exe
        go = shutil.which("go") or "/usr/local/go/bin/go"
        if not Path(go).exists():
            apt_install("golang-go")
            go = shutil.which("go") or "go"
        log(f"building versitygw {VERSITYGW_VERSION} with go install (first run only)")
        dest.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "GOBIN": str(dest), "CGO_ENABLED": "0"}
        run([go, "install", f"{VERSITYGW_MODULE}@{VERSITYGW_VERSION}"], env=env)
        return exe

    def start(self) -> None:
        if self.running_healthy():
            return
        exe = self.binary()
        root = self.dir / "data"
        root.mkdir(parents=True, exist_ok=True)
        log(f"starting versitygw (S3) on {self.url}")
        env = {**os.environ, "ROOT_ACCESS_KEY_ID": self.access_key,
               "ROOT_SECRET_ACCESS_KEY": self.secret_key}
        self.spawn([str(exe), "--port", f"{HOST}:{S3_PORT}", "--quiet", "posix", str(root)],
                   env=env)
        try:
            wait_until(self.healthy, "S3 (versitygw)", 30)
        except ProvisionError as exc:
            raise ProvisionError(f"{exc}\n{self.tail()}") from None

    def healthy(self) -> bool:
        import boto3
        from botocore.config import Config

        try:
            client = boto3.client(
                "s3", endpoint_url=self.url, aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key, region_name="us-east-1",
                config=Config(connect_timeout=1, read_timeout=2,
                              retries={"max_attempts": 1}),
            )
            client.list_buckets()  # signed request: proves auth is on and works
            return True
        except Exception:
            return False


# --------------------------------------------------------------------------- workerd


def workerd_binary() -> Path:
    pkg = ROOT / "workerd"
    marker = pkg / "node_modules" / ".package-lock.json"
    if not marker.exists():
        log("installing workerd from npm (npm ci)")
        run(["npm", "ci", "--prefix", str(pkg), "--no-audit", "--no-fund"])
    from harness.workerd import workerd_bin

    exe = workerd_bin()
    run([str(exe), "--version"])
    return exe


PGBOUNCER_PACKAGES = ("pgbouncer", "libc-ares2")


def pgbouncer_binary() -> Path:
    """PgBouncer from Debian's package (bookworm: 1.18), unpacked into the cache with
    `apt-get download` + `dpkg -x`: no root, no init script, no postgresql-common. The
    Hyperdrive component runs it (services/hyperdrive); its other libraries (libevent,
    libssl) are the system's."""
    root = CACHE / "pgbouncer" / "root"
    exe = root / "usr" / "sbin" / "pgbouncer"
    if not exe.exists():
        debs = CACHE / "pgbouncer" / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        log("downloading PgBouncer (apt-get download)")
        run(["apt-get", "download", "-qq", *PGBOUNCER_PACKAGES], cwd=debs)
        for deb in sorted(debs.glob("*.deb")):
            run(["dpkg", "-x", str(deb), str(root)])
    env = {**os.environ, "LD_LIBRARY_PATH": str(root / "usr" / "lib" / "x86_64-linux-gnu")}
    run([str(exe), "--version"], env=env)
    return exe


# --------------------------------------------------------------------------- orchestration


def _file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _s3_credentials() -> tuple[str, str]:
    # Keep the credentials stable across restarts: the data directory outlives them.
    existing = parse_env_file(SERVICES_ENV)
    access = existing.get("S3_ACCESS_KEY_ID") or "wdl-" + secrets.token_hex(6)
    secret = existing.get("S3_SECRET_ACCESS_KEY") or secrets.token_urlsafe(30)
    return access, secret


def up() -> dict[str, str]:
    STATE.mkdir(parents=True, exist_ok=True)
    access, secret = _s3_credentials()
    kafka, redis_, pg, s3 = Kafka(), Redis(), Postgres(), S3(access, secret)
    started = time.monotonic()
    kafka.start()
    redis_.start()
    pg.start()
    s3.start()
    workerd = workerd_binary()
    pgbouncer = pgbouncer_binary()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "REDIS_URL": redis_.url,
        "DATABASE_URL": pg.url,
        "S3_ENDPOINT_URL": s3.url,
        "S3_ACCESS_KEY_ID": access,
        "S3_SECRET_ACCESS_KEY": secret,
        "S3_REGION": "us-east-1",
        "WORKERD_BIN": str(workerd),
        # The Hyperdrive component's pooler (it runs PgBouncer itself: its configuration
        # is the projected configs'). Where it listens is not set here: each platform a
        # test starts picks a free port (`wdl up` defaults to 26432, WDL_HYPERDRIVE_URL).
        "PGBOUNCER_BIN": str(pgbouncer),
        "WDL_HARNESS_STATE": str(STATE),
    }
    SERVICES_ENV.write_text(
        "# written by `make services`; source with: set -a; . .wdl/services.env; set +a\n"
        + "".join(f"{k}={v}\n" for k, v in env.items())
    )
    SERVICES_ENV.chmod(0o600)
    log(f"all services healthy in {time.monotonic() - started:.1f}s; wrote {SERVICES_ENV}")
    return env


def down() -> None:
    existing = parse_env_file(SERVICES_ENV)
    for managed in (S3(existing.get("S3_ACCESS_KEY_ID", ""), ""), Postgres(), Redis(), Kafka()):
        if managed.pid() is not None:
            log(f"stopping {managed.name}")
        managed.terminate()


def status() -> int:
    existing = parse_env_file(SERVICES_ENV)
    s3 = S3(existing.get("S3_ACCESS_KEY_ID", ""), existing.get("S3_SECRET_ACCESS_KEY", ""))
    checks: list[tuple[Managed, Callable[[], bool]]] = [
        (m, m.healthy) for m in (Kafka(), Redis(), Postgres(), s3)
    ]
    bad = 0
    for m, healthy in checks:
        pid = m.pid()
        ok = pid is not None and healthy()
        bad += not ok
        print(f"{m.name:10} {'healthy' if ok else 'DOWN':8} pid={pid}")
    return 1 if bad else 0


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "up"
    try:
        if cmd == "up":
            up()
        elif cmd == "down":
            down()
        elif cmd == "status":
            return status()
        elif cmd == "pgbouncer":  # `make run`: wdl dev's Hyperdrive pooler, nothing else
            print(pgbouncer_binary())
        elif cmd == "restart" and argv[1:] == ["kafka"]:
            k = Kafka()
            k.terminate()
            k.start()
        else:
            print("usage: python -m harness [up|down|status|pgbouncer|restart kafka]",
                  file=sys.stderr)
            return 2
    except ProvisionError as exc:
        log(f"error: {exc}")
        return 1
    return 0
