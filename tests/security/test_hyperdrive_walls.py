"""The Hyperdrive wall: a namespace reaches its own configs' origins only, and no
origin credential leaves the control plane's sealed form.

Attack first: the attacker (a deployer token scoped to its namespace) makes a config
of its own and reads its binding from its own worker, as any tenant can. With those
credentials it logs in at the real PgBouncer to the victim's config, as the victim's
user, to PgBouncer's admin console; it logs in with the victim's origin credentials;
it binds the victim's config id; it lists, reads, updates and deletes the victim's
config through the API; it tries names and connection strings that would write into
PgBouncer's files. Every try is refused (PgBouncer: `login rejected`, `not allowed`,
a failed md5 login (`password authentication failed`) or SASL exchange (the console);
the API: 404 `namespace_not_found`/`hyperdrive_not_found`, 409, 400/422 with a code)
and changes nothing: the victim's config keeps its version and its worker still
queries its origin. The origin's user
and password, and the pooler passwords, are then grepped for in every API answer,
the audit rows (which carry each event's payload), the platform's logs and, under
`wdl dev`, every file of its data directory (the embedded event log and audit).

The pooler's own `/metrics` and `/healthz` (the component's health server): a local
user of the host or a tenant holding its config's pooler password reads nothing without
the platform's internal token (401 on every path, whatever it sends), and with it the
metrics show the namespaces' connections without any credential, origin host or user,
or config id.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from harness.endpoints import Endpoints
from tests.conftest import new_database
from tests.security.rig import ATTACKER, VICTIM, Walls

pytestmark = pytest.mark.security
WALLS_COMPONENTS = ("hyperdrive",)

SPY_JS = """
export default { async fetch(req, env) { return Response.json(env.HD ?? null) } }
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def walls_env() -> dict[str, str]:
    # Both shapes run the pooler here (`wdl dev` reads it too): the test dials it; and its
    # health server (metrics read every 0.2 s).
    return {"WDL_HYPERDRIVE_URL": f"postgresql://127.0.0.1:{_free_port()}",
            "WDL_HYPERDRIVE_HEALTH_PORT": str(_free_port()), "WDL_HYPERDRIVE_STATS_S": "0.2"}


class Origin:
    def __init__(self, admin_url: str, database: str, role: str, password: str) -> None:
        self.admin_url, self.database, self.role, self.password = \
            admin_url, database, role, password
        host = admin_url.split("@", 1)[1].split("/", 1)[0]
        self.url = f"postgresql://{role}:{password}@{host}/{database}"
        self.host, self.port = host.split(":")[0], int(host.split(":")[1])


@pytest.fixture(scope="module")
def origins(services: Endpoints) -> Iterator[tuple[Origin, Origin]]:
    """Two origin roles with distinctive passwords in one fresh database."""
    with new_database(services) as url:
        database = url.rsplit("/", 1)[1]
        made = []
        with psycopg.connect(url, autocommit=True) as conn:
            for who in ("victim", "attacker"):
                role = f"hd_{who}_{uuid.uuid4().hex[:8]}"
                password = f"{who.capitalize()}OriginPw-{uuid.uuid4().hex}"
                conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
                conn.execute(f"GRANT CONNECT ON DATABASE {database} TO {role}")
                made.append(Origin(url, database, role, password))
        try:
            yield made[0], made[1]
        finally:
            with psycopg.connect(url, autocommit=True) as conn:
                for o in made:
                    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE usename = %s", (o.role,))
                    conn.execute(f"DROP OWNED BY {o.role}")
                    conn.execute(f"DROP ROLE IF EXISTS {o.role}")


def _pooler_port(walls_env: dict[str, str]) -> int:
    return int(walls_env["WDL_HYPERDRIVE_URL"].rsplit(":", 1)[1])


def _login(port: int, user: str, password: str, dbname: str) -> str:
    """`ok <current_user>` or the pooler's refusal."""
    try:
        with psycopg.connect(host="127.0.0.1", port=port, user=user, password=password,
                             dbname=dbname, connect_timeout=5) as conn:
            row = conn.execute("select current_user").fetchone()
            return f"ok {row[0] if row else ''}"
    except psycopg.OperationalError as exc:
        return f"refused {exc}"


async def _until_login(port: int, value: dict[str, Any], timeout: float = 20) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await asyncio.to_thread(_login, port, value["user"], value["password"],
                                      value["database"])
        if got.startswith("ok") or asyncio.get_running_loop().time() > deadline:
            return got
        await asyncio.sleep(0.25)


async def _binding(walls: Walls, ns: str, worker: str) -> dict[str, Any]:
    r = await walls.get(walls.host(ns), f"/{worker}/")
    assert r.status_code == 200, r.text
    value: dict[str, Any] = r.json()
    assert value is not None
    return value


@pytest.fixture(scope="module")
async def scene(origins: tuple[Origin, Origin], walls: Walls,
                walls_env: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
    victim_origin, attacker_origin = origins
    admin, attacker = walls.admin, walls.attacker
    made = await admin.wdl("hyperdrive", "create", "vdb", "--ns", VICTIM,
                           "--connection-string", "-", "--json",
                           stdin=victim_origin.url + "\n")
    vid = made.json()["id"]
    victim = type(attacker)("victim-admin", admin.env, admin.workdir, VICTIM)
    toml = f'\n[[hyperdrive]]\nbinding = "HD"\nid = "{vid}"\n'
    await victim.deploy(victim.project("vhd", SPY_JS, toml))
    own = await attacker.wdl("hyperdrive", "create", "mine", "--ns", ATTACKER,
                             "--connection-string", "-", "--json",
                             stdin=attacker_origin.url + "\n")
    aid = own.json()["id"]
    await attacker.deploy(attacker.project(
        "spy", SPY_JS, f'\n[[hyperdrive]]\nbinding = "HD"\nid = "{aid}"\n'))
    port = _pooler_port(walls_env)
    v_value = await _binding(walls, VICTIM, "vhd")
    a_value = await _binding(walls, ATTACKER, "spy")
    # Both configs are served: the refusals below are the wall, not a missing pooler.
    assert await _until_login(port, v_value) == f"ok {victim_origin.role}"
    assert await _until_login(port, a_value) == f"ok {attacker_origin.role}"
    before = (await admin.wdl("hyperdrive", "get", vid, "--ns", VICTIM, "--json")).json()
    yield {"vid": vid, "aid": aid, "port": port, "victim": v_value, "attacker": a_value,
           "before": before, "answers": [made.text, own.text]}


async def test_credentials_of_one_config_do_not_open_another(
        walls: Walls, scene: dict[str, Any], origins: tuple[Origin, Origin]) -> None:
    port, a, v = scene["port"], scene["attacker"], scene["victim"]
    victim_origin, _ = origins
    tries = {
        "A's credentials, B's database": (a["user"], a["password"], v["database"]),
        "B's user, A's password": (v["user"], a["password"], v["database"]),
        "B's user, A's password, A's database": (v["user"], a["password"], a["database"]),
        "A's credentials, the origin's database name": (a["user"], a["password"],
                                                        victim_origin.database),
        "A's credentials, the admin console": (a["user"], a["password"], "pgbouncer"),
        "the origin's credentials at the pooler": (victim_origin.role, victim_origin.password,
                                                   v["database"]),
        "the origin's credentials, its own database": (victim_origin.role,
                                                       victim_origin.password,
                                                       victim_origin.database),
        "the pooler's admin, A's password": ("wdl_pooler_admin", a["password"], "pgbouncer"),
    }
    for what, (user, password, db) in tries.items():
        got = await asyncio.to_thread(_login, port, user, password, db)
        assert got.startswith("refused"), (what, got)
        assert any(refusal in got for refusal in (
            "login rejected", "SASL authentication failed", "password authentication failed",
            "not allowed")), (what, got)
    # The wall holds for the right reason: each config still opens its own origin.
    assert (await asyncio.to_thread(_login, port, v["user"], v["password"], v["database"])
            ).startswith("ok")
    await walls.assert_victim_intact()


async def test_the_victims_config_is_out_of_the_attackers_reach(
        walls: Walls, scene: dict[str, Any], origins: tuple[Origin, Origin]) -> None:
    attacker, vid = walls.attacker, scene["vid"]
    _, attacker_origin = origins
    for args in (("list", "--ns", VICTIM), ("get", vid, "--ns", VICTIM),
                 ("get", "vdb", "--ns", VICTIM),
                 ("update", vid, "--ns", VICTIM, "--connection-string", attacker_origin.url),
                 ("delete", vid, "--ns", VICTIM, "--force")):
        r = await attacker.wdl("hyperdrive", *args, "--json", ok=False)
        # A token scoped to another namespace is told the namespace is not found (as for
        # every resource: no oracle of which namespaces exist).
        assert r.code != 0 and ("namespace_not_found" in r.text or "forbidden" in r.text), \
            (args, r.text)
        scene["answers"].append(r.text)
    # By id inside its own namespace: not found (no oracle of other namespaces' ids).
    r = await attacker.wdl("hyperdrive", "get", vid, "--ns", ATTACKER, ok=False)
    assert r.code != 0 and "hyperdrive_not_found" in r.text, r.text
    r = await attacker.wdl("hyperdrive", "delete", vid, "--ns", ATTACKER, ok=False)
    assert r.code != 0 and "hyperdrive_not_found" in r.text, r.text
    # Binding the victim's id: the deploy is refused, nothing is written.
    r = await attacker.deploy(attacker.project(
        "steal", SPY_JS, f'\n[[hyperdrive]]\nbinding = "HD"\nid = "{vid}"\n'), ok=False)
    assert r.code != 0 and "binding_target_missing" in r.text, r.text
    served = await walls.attack("steal")
    assert served.status_code == 404, served.text
    after = (await walls.admin.wdl("hyperdrive", "get", vid, "--ns", VICTIM, "--json")).json()
    assert after == scene["before"]
    got = await _until_login(scene["port"], scene["victim"])
    assert got.startswith("ok"), got


@pytest.mark.parametrize("name", ["../x", "Main", "a b", "x" * 64, "-x", "hd_x;drop", ""])
async def test_names_are_allow_listed(walls: Walls, scene: dict[str, Any], name: str,
                                      origins: tuple[Origin, Origin]) -> None:
    r = await walls.attacker.wdl("hyperdrive", "create", "--ns", ATTACKER,
                                 "--connection-string", origins[1].url, "--", name, ok=False)
    assert r.code != 0 and ("validation_failed" in r.text or "invalid" in r.text), r.text
    listed = (await walls.attacker.wdl("hyperdrive", "list", "--ns", ATTACKER, "--json")).json()
    assert [c["name"] for c in listed] == ["mine"]


INJECTIONS = [
    # Each would add a key to the alias's line, a line to the ini, or quote out of it.
    "postgresql://u:pw@127.0.0.1:5432/db pool_mode=transaction",
    "postgresql://u:pw%20auth_user=x@127.0.0.1:5432/db",
    "postgresql://u:pw'x@127.0.0.1:5432/db",
    "postgresql://u:pw%0Ahd_x=host=evil@127.0.0.1:5432/db",
    "postgresql://u%3Dx:pw@127.0.0.1:5432/db",
    "postgresql://u:pw@127.0.0.1 port=1:5432/db",
    "postgresql://u:pw@127.0.0.1:5432/db?sslmode=disable&options=-c%20role=postgres",
    "postgresql://u:pw@127.0.0.1:5432/pgbouncer%0A[pgbouncer]",
    "mysql://u:pw@127.0.0.1:3306/db",
]


@pytest.mark.parametrize("conn", INJECTIONS)
async def test_connection_strings_are_allow_listed_and_never_echoed(
        walls: Walls, scene: dict[str, Any], conn: str) -> None:
    r = await walls.attacker.wdl("hyperdrive", "create", "inj", "--ns", ATTACKER,
                                 "--connection-string", "-", stdin=conn + "\n", ok=False)
    assert r.code != 0 and ("invalid_connection_string" in r.text
                            or "validation_failed" in r.text), r.text
    assert "pw" not in r.text.replace("password", ""), r.text
    r = await walls.attacker.wdl("hyperdrive", "update", "mine", "--ns", ATTACKER,
                                 "--connection-string", "-", stdin=conn + "\n", ok=False)
    assert r.code != 0 and "invalid_connection_string" in r.text, r.text


def _hold(port: int, value: dict[str, Any]) -> psycopg.Connection[Any]:
    conn = psycopg.connect(host="127.0.0.1", port=port, user=value["user"],
                           password=value["password"], dbname=value["database"],
                           connect_timeout=5)
    conn.execute("select 1")  # in a transaction: its server connection held
    return conn


async def test_pooler_metrics_and_health_need_the_token_and_name_no_secret(
        walls: Walls, scene: dict[str, Any], origins: tuple[Origin, Origin],
        walls_env: dict[str, str]) -> None:
    base = f"http://127.0.0.1:{walls_env['WDL_HYPERDRIVE_HEALTH_PORT']}"
    good = {"authorization": f"Bearer {walls.internal_token}"}
    a_password = scene["attacker"]["password"]
    # No token, wrong ones, a near miss, the token in a header it is not, and what a
    # tenant holds: its pooler password, its deployer token, the admin console's name.
    wrong: list[dict[str, str]] = [
        {}, {"authorization": "Bearer wrong"}, {"x-wdl-internal-token": "wrong"},
        {"authorization": f"Bearer {walls.internal_token[:-1]}"},
        {"authorization": walls.internal_token}, {"x-wdl-token": walls.internal_token},
        {"authorization": f"Bearer {a_password}"},
        {"authorization": f"Bearer {walls.attacker.env['WDL_TOKEN']}"},
        {"authorization": "Basic " + base64.b64encode(
            f"wdl_pooler_admin:{a_password}".encode()).decode()}]
    held = [await asyncio.to_thread(_hold, scene["port"], scene[who])
            for who in ("victim", "attacker")]
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            for method, path in (("GET", "/metrics"), ("GET", "/healthz"), ("POST", "/metrics"),
                                 ("GET", "/"), ("GET", "/no-such-route")):
                for headers in wrong:
                    r = await client.request(method, path, headers=headers)
                    assert r.status_code == 401, (method, path, headers, r.text)
                    assert r.json()["code"] == "unauthorized", r.text
                    assert "wdl_hyperdrive" not in r.text and "configs" not in r.text
            # The control: the token opens both, and the metrics see the held connections.
            deadline = asyncio.get_running_loop().time() + 20
            while True:
                metrics = await client.get("/metrics", headers=good)
                assert metrics.status_code == 200, metrics.text
                if all(f'wdl_hyperdrive_clients_active{{namespace="{ns}"}} 1.0' in metrics.text
                       and f'wdl_hyperdrive_servers_active{{namespace="{ns}"}} 1.0'
                       in metrics.text for ns in (VICTIM, ATTACKER)):
                    break
                assert asyncio.get_running_loop().time() < deadline, metrics.text
                await asyncio.sleep(0.25)
            health = await client.get("/healthz", headers=good)
            assert health.status_code == 200 and health.json()["ok"] is True, health.text
    finally:
        for conn in held:
            await asyncio.to_thread(conn.close)
    victim_origin, attacker_origin = origins
    named = {"an origin's user": [victim_origin.role, attacker_origin.role],
             "an origin's password": [victim_origin.password, attacker_origin.password],
             "a pooler password": [scene["victim"]["password"], a_password],
             "a config id": [scene["vid"], scene["aid"]],
             "a database alias or pooler user": ["hd_"],
             "an origin's host": [f"{victim_origin.host}:{victim_origin.port}"],
             "an origin's database": [victim_origin.database]}
    for what, values in named.items():
        for value in values:
            assert value not in metrics.text, f"{what} is in the pooler's metrics"
            assert value not in health.text, f"{what} is in the pooler's /healthz"
    await walls.assert_victim_intact()
    assert await _until_login(scene["port"], scene["victim"]) == f"ok {victim_origin.role}"


def _files(root: Path) -> dict[str, str]:
    """Every file under `wdl dev`'s data dir (the embedded event log and audit among them)."""
    return {str(p): p.read_bytes().decode("latin-1") for p in root.rglob("*") if p.is_file()}


async def test_no_credential_in_answers_audit_logs_or_files(
        walls: Walls, scene: dict[str, Any], origins: tuple[Origin, Origin],
        caplog: pytest.LogCaptureFixture) -> None:
    victim_origin, attacker_origin = origins
    secrets = {victim_origin.password, attacker_origin.password, victim_origin.role,
               attacker_origin.role, scene["victim"]["password"],
               scene["attacker"]["password"]}
    answers = list(scene["answers"])
    for ns, actor in ((VICTIM, walls.admin), (ATTACKER, walls.attacker)):
        answers.append((await actor.wdl("hyperdrive", "list", "--ns", ns, "--json")).text)
        answers.append((await actor.wdl("hyperdrive", "get", "vdb" if ns == VICTIM else "mine",
                                        "--ns", ns)).text)
    admin_token = walls.admin.env["WDL_TOKEN"]
    async with httpx.AsyncClient(base_url=walls.api, timeout=30) as client:
        for ns in (VICTIM, ATTACKER):
            r = await client.get("/v1/audit", params={"namespace": ns, "limit": 500},
                                 headers={"authorization": f"Bearer {admin_token}"})
            assert r.status_code == 200, r.text
            assert "hyperdrive.created" in r.text
            answers.append(r.text)
    texts = {"answers": "\n".join(answers), "logs": caplog.text}
    dev = walls.extra.get("dev")
    if dev is not None:
        texts["wdl dev's log"] = dev.log.read_text(errors="replace")
        texts.update(await asyncio.to_thread(_files, Path(walls.data_dir)))
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a credential appears in {where}"
