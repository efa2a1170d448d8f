"""Hyperdrive on the real servers: `wdl hyperdrive` through the control API, the
projector over Kafka/Redis, the Hyperdrive component running the real PgBouncer
(Debian's package) in front of the harness's real PostgreSQL.

The tenant's side of the hop (`connect()` through the egress, issue 26's other half)
is not here: the test connects to the pooler as the egress will, with the binding's
own values from the state service's bundle (the address swapped for the pooler's,
as `pooler_address` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from harness.endpoints import Endpoints
from services.platform import Platform, PlatformOptions
from services.settings import Settings
from tests.conftest import new_database
from tests.platform_stack import ADMIN, WDL, servers_env

pytestmark = pytest.mark.integration
COMPONENTS = frozenset({"api", "projector", "state", "hyperdrive"})
INTERNAL = "wdl-internal-hyperdrive-test"


class HdStack:
    def __init__(self, platform: Platform, env: dict[str, str], tmp: Path) -> None:
        self.platform = platform
        self.env = env
        self.tmp = tmp

    @property
    def pooler(self) -> tuple[str, int]:
        hd = self.platform.hyperdrive
        assert hd is not None
        return hd.options.host, hd.port

    async def wdl(self, *args: str, ok: bool = True, stdin: str | None = None) -> str:
        proc = await asyncio.create_subprocess_exec(
            WDL, *args, env=self.env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        if ok and proc.returncode != 0:
            raise AssertionError(f"wdl {' '.join(args)} failed: {err.decode()}{out.decode()}")
        return out.decode() + err.decode() if not ok else out.decode()

    async def deploy_bound(self, ns: str, worker: str, cid: str) -> dict[str, Any]:
        """Deploy a worker binding config `cid`; its env value as the gateway gets it."""
        project = self.tmp / f"{worker}-{cid[:6]}"
        (project / "src").mkdir(parents=True, exist_ok=True)
        (project / "wrangler.toml").write_text(
            f'name = "{worker}"\nmain = "src/index.js"\ncompatibility_date = "2025-06-01"\n'
            f'compatibility_flags = ["nodejs_compat"]\n\n[[hyperdrive]]\nbinding = "HD"\n'
            f'id = "{cid}"\n')
        (project / "src" / "index.js").write_text(
            "export default { fetch(req, env) { return new Response(env.HD.host) } }")
        out = await self.wdl("deploy", str(project), "--ns", ns, "--json")
        version = json.loads(out)["version_id"]
        assert self.platform.state is not None
        async with httpx.AsyncClient(timeout=30) as client:
            r = await client.get(self.platform.state.url + "/bundle",
                                 params={"ns": ns, "worker": worker, "version": version},
                                 headers={"authorization": f"Bearer {INTERNAL}"})
        assert r.status_code == 200, r.text
        value: dict[str, Any] = r.json()["env"]["HD"]
        return value


@contextlib.asynccontextmanager
async def hyperdrive_stack(services: Endpoints, database: str,
                           unique_name: Callable[[str], str], tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[HdStack]:
    env = servers_env(services, database, unique_name, tmp_path)
    monkeypatch.setenv("WDL_ROOT_KEYS", env["WDL_ROOT_KEYS"])
    options = PlatformOptions(components=COMPONENTS, internal_token=INTERNAL, api_port=0,
                              state_port=0, hyperdrive_port=0, host_verification=False)
    async with Platform(Settings.from_env(env), options) as platform:
        assert platform.api is not None and platform.hyperdrive is not None
        cli_env = {**env, "WDL_CONTROL_URL": platform.api.url, "WDL_TOKEN": ADMIN,
                   "WDL_CONFIG": str(tmp_path / "no-config.toml")}
        yield HdStack(platform, cli_env, tmp_path)


@contextlib.contextmanager
def origin_role(services: Endpoints, database_url: str) -> Iterator[tuple[str, str]]:
    """A PostgreSQL role of its own (distinctive name and password, greppable), owner of
    a `items` table in `database_url`'s database; dropped afterwards."""
    role = f"origin_{uuid.uuid4().hex[:10]}"
    password = f"Orig1nPw-{uuid.uuid4().hex}"
    assert services.database_url is not None
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f"GRANT ALL ON SCHEMA public TO {role}")
        conn.execute(f"GRANT CREATE, CONNECT ON DATABASE {conninfo_db(database_url)} TO {role}")
    try:
        yield role, password
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
        with psycopg.connect(database_url, autocommit=True) as conn:
            # Pooled server connections of this role are gone once PgBouncer stopped.
            conn.execute(f"DROP ROLE IF EXISTS {role}")


def conninfo_db(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?")[0]


def origin_url(database_url: str, role: str, password: str) -> str:
    host = database_url.split("@", 1)[1].split("/", 1)[0]
    return f"postgresql://{role}:{password}@{host}/{conninfo_db(database_url)}"


def pooled(stack: HdStack, value: dict[str, Any], **kw: Any) -> psycopg.Connection[Any]:
    host, port = stack.pooler
    return psycopg.connect(host=host, port=port, user=value["user"],
                           password=value["password"], dbname=value["database"],
                           connect_timeout=5, **kw)


async def until(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await asyncio.to_thread(check)
        except (psycopg.Error, AssertionError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


@pytest.fixture
async def stack(services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[HdStack]:
    async with hyperdrive_stack(services, fresh_database, unique_name, tmp_path,
                                monkeypatch) as s:
        yield s


async def test_config_served_by_pgbouncer_update_and_delete_reload(
        stack: HdStack, services: Endpoints, unique_name: Callable[[str], str]) -> None:
    ns = unique_name("hd")
    await stack.wdl("ns", "create", ns)
    with new_database(services) as db1, new_database(services) as db2, \
            origin_role(services, db1) as (role, password):
        with psycopg.connect(db2, autocommit=True) as conn:
            conn.execute(f"GRANT CONNECT ON DATABASE {conninfo_db(db2)} TO {role}")
        created = json.loads(await stack.wdl(
            "hyperdrive", "create", "main", "--ns", ns, "--connection-string", "-", "--json",
            stdin=origin_url(db1, role, password) + "\n"))
        cid = created["id"]
        assert len(cid) == 32
        got = json.loads(await stack.wdl("hyperdrive", "get", "main", "--ns", ns, "--json"))
        assert got["id"] == cid and got["origin"]["database"] == conninfo_db(db1)
        assert role not in json.dumps(got) and password not in json.dumps(got)

        value = await stack.deploy_bound(ns, "api", cid)
        assert value["host"] == f"{cid}.hyperdrive.wdl" and value["port"] == 5432
        assert value["user"] == value["database"] == f"hd_{cid}"
        assert password not in json.dumps(value) and role not in json.dumps(value)

        def session() -> dict[str, Any]:
            with pooled(stack, value) as conn:
                out: dict[str, Any] = {}
                out["who"] = conn.execute("select current_user, current_database()").fetchone()
                conn.execute("create table if not exists items (id int primary key, v text)")
                conn.commit()
                # A prepared statement (server-side, named by psycopg), run several times.
                for i in range(3):
                    conn.execute("insert into items values (%s, %s) on conflict do nothing",
                                 (i, f"v{i}"), prepare=True)
                conn.commit()
                out["row"] = conn.execute("select v from items where id = %s", (1,),
                                          prepare=True).fetchone()
                # A transaction: rolled back, nothing stays.
                with conn.transaction(force_rollback=True):
                    conn.execute("insert into items values (10, 'gone')")
                    out["inside"] = conn.execute("select count(*) from items").fetchone()
                out["after"] = conn.execute("select count(*) from items").fetchone()
                # An error is the driver's own (SQLSTATE 22012).
                try:
                    conn.execute("select 1/0")
                except psycopg.errors.DivisionByZero as exc:
                    out["error"] = exc.sqlstate
                conn.rollback()
                return out

        out = await until(session)
        assert out["who"] == (role, conninfo_db(db1))
        assert out["row"] == ("v1",)
        assert out["inside"] == (4,) and out["after"] == (3,)
        assert out["error"] == "22012"
        hd = stack.platform.hyperdrive
        assert hd is not None
        reloads = hd.reloads

        # Update: a new origin database; the id and the binding's credentials stay.
        await stack.wdl("hyperdrive", "update", cid, "--ns", ns, "--connection-string",
                        origin_url(db2, role, password), "--pool-size", "2")

        def moved() -> None:
            with pooled(stack, value) as conn:
                row = conn.execute("select current_database()").fetchone()
                assert row == (conninfo_db(db2),), row

        await until(moved)
        assert hd.reloads > reloads
        assert "pool_size=2 " in (hd.workdir / "pgbouncer.ini").read_text()

        # The namespace's limit bounds the config's pool (and the reload follows it).
        await stack.wdl("ns", "limits", "set", "--ns", ns, "--hyperdrive-connections", "1")

        def limited() -> None:
            text = (hd.workdir / "pgbouncer.ini").read_text()
            assert "pool_size=1 max_db_connections=1" in text, text

        await until(limited)
        await until(moved)

        # Delete (forced: the active version binds it): the pooler forgets the config.
        refused = await stack.wdl("hyperdrive", "delete", "main", "--ns", ns, ok=False)
        assert "resource_in_use" in refused or "bound by the active version" in refused
        await stack.wdl("hyperdrive", "delete", "main", "--ns", ns, "--force")

        def forgotten() -> str:
            try:
                pooled(stack, value).close()
            except psycopg.OperationalError as exc:
                return str(exc)
            raise AssertionError("the deleted config still logs in")

        assert "login rejected" in await until(forgotten)
        assert json.loads(await stack.wdl("hyperdrive", "list", "--ns", ns, "--json")) == []


async def test_pool_files_are_private_and_pooler_is_not_root(stack: HdStack) -> None:
    hd = stack.platform.hyperdrive
    assert hd is not None
    for name in ("pgbouncer.ini", "userlist.txt", "hba.conf"):
        assert (hd.workdir / name).stat().st_mode & 0o777 == 0o600, name
    assert hd.workdir.stat().st_mode & 0o777 == 0o700
    assert _uid_of(int((hd.workdir / "pgbouncer.pid").read_text())) != "0"


def _uid_of(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
