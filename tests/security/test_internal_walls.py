"""The Internals wall: a local user of a platform host (who can connect to every
loopback port, read world-readable files and every process's command line) and a
tenant get nothing from the platform's internal endpoints, and no file holding the
internal token is readable by anyone but the platform's user.

The attacks find the platform's ports the way such a user would (every port its
processes listen on, tests/security/procs.py) and try each internal endpoint on
all of them: read the route table and host claims, take the victim's bundle and
its decrypted secret, forge a Durable Object lease, feed the watchdog forged
markers, entries and incidents (to get the victim quarantined), and read the
generated workerd configs. Each is refused with 401 {code, message} and changes
nothing. `test_every_route_of_every_internal_app_requires_the_token` walks the
route table of every internal server of a platform running every component.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.endpoints import Endpoints
from harness.workerd import free_port
from services.components import COMPONENTS
from services.crypto import generate_root_key
from services.dataplane.gateway import RecyclePolicy
from services.internal import MESSAGE
from services.platform import Platform, PlatformOptions
from services.serving import HttpServer
from services.settings import Settings
from tests.conftest import new_database
from tests.platform_stack import WDL
from tests.security import procs
from tests.security.internal_apps import endpoints, workerd_paths
from tests.security.rig import INTERNAL_TOKEN, VICTIM, VICTIM_SECRET, Walls

pytestmark = pytest.mark.security

UNAUTHORIZED = {"code": "unauthorized", "message": MESSAGE}
# No token, a wrong one in each form, a near miss, the right one in a header it is not.
WRONG: tuple[dict[str, str], ...] = (
    {}, {"x-wdl-internal-token": "wrong"}, {"authorization": "Bearer wrong"},
    {"x-wdl-internal-token": INTERNAL_TOKEN[:-1]}, {"authorization": INTERNAL_TOKEN},
    {"x-wdl-token": INTERNAL_TOKEN})
BEARER = {"authorization": f"Bearer {INTERNAL_TOKEN}"}  # health checks, scrapers
OWN = {"x-wdl-internal-token": INTERNAL_TOKEN}  # the platform's own calls
NOBODY = 65534


# --- what the attacker sees -----------------------------------------------------------

def platform_pids(walls: Walls) -> list[int]:
    """The platform's processes that speak HTTP: not Hyperdrive's PgBouncer, whose port
    speaks PostgreSQL's protocol and is walled by its hba and passwords
    (tests/security/test_hyperdrive_walls.py)."""
    if walls.kind == "dev":
        dev = walls.extra["dev"]
        assert dev.proc is not None
        pids = procs.session(dev.proc.pid)
    else:
        pids = procs.tree(os.getpid())  # the components run in this process, workerd below
    return [pid for pid in pids
            if not any(arg.endswith("pgbouncer") for arg in procs.cmdline(pid)[:1])]


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def platform_ports(walls: Walls) -> list[int]:
    """Every port the platform listens on but the control API's (public, with tokens
    of its own: tests/integration/test_api_auth_scopes.py)."""
    ports = procs.listening_ports(platform_pids(walls)) - {_port(walls.api)}
    assert _port(walls.gateway) in ports, "the port scan misses the gateway"
    for url in walls.internals.values():
        assert _port(url) in ports, f"the port scan misses {url}"
    # api, gateway (+ a private socket per process), state, data, d1, DO host (2 sockets)
    # and its supervisor, the supervisor's health server: at least these.
    assert len(ports) >= 9, ports
    return sorted(ports)


def _json(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return None


def problem(port: int, path: str, r: httpx.Response) -> str | None:
    """None if `r` refused the request: the internal token's 401, or - on a gateway
    socket, outside `/__wdl/` - a tenant route that does not exist (any path there is a
    tenant's). Else what went wrong."""
    where = f"port {port} {r.request.method} {path}: {r.status_code} {r.text[:300]!r}"
    if VICTIM_SECRET in r.text:
        return "SECRET LEAKED: " + where
    body = _json(r)
    if r.status_code == 401 and body == UNAUTHORIZED:
        return None
    if r.status_code == 404 and not path.startswith("/__wdl/") and isinstance(body, dict) \
            and "error" in body:
        return None
    return where


async def everywhere(walls: Walls, method: str, path: str,
                     **kw: Any) -> list[tuple[int, httpx.Response]]:
    out = []
    async with httpx.AsyncClient(timeout=20) as client:
        for port in platform_ports(walls):
            out.append((port, await client.request(method, f"http://127.0.0.1:{port}{path}",
                                                   **kw)))
    return out


async def attack_everywhere(walls: Walls, method: str, path: str, **kw: Any) -> list[str]:
    """Every form of a missing or wrong token on every port: what was not refused."""
    extra = kw.pop("headers", {})
    problems = []
    for headers in WRONG:
        for port, r in await everywhere(walls, method, path, headers={**extra, **headers},
                                        **kw):
            found = problem(port, path, r)
            if found is not None:
                problems.append(f"{headers}: {found}")
    return problems


async def admin_json(walls: Walls, *args: str) -> Any:
    return (await walls.admin.wdl(*args, "--json")).json()


async def victim_version(walls: Walls) -> str:
    rows = await admin_json(walls, "workers", "--ns", VICTIM)
    (vault,) = [r for r in rows if r["name"] == "vault"]
    return str(vault["active_version"])


async def state_url(walls: Walls) -> str:
    """The state service's URL: known on the servers; on `wdl dev` the one port that
    answers `/incidents` to the token."""
    if "state" in walls.internals:
        return walls.internals["state"]
    found = []
    for port, r in await everywhere(walls, "GET", "/incidents", headers=OWN):
        if r.status_code == 200 and "findings" in r.text:
            found.append(f"http://127.0.0.1:{port}")
    assert len(found) == 1, found
    return found[0]


# --- attacks --------------------------------------------------------------------------

INTERNAL_READS = [
    "/healthz", "/metrics", "/hosts", "/route?ns=victim&worker=vault",
    "/resolve?host=victim.workers.local&path=/vault/", "/stats?instance=gw0", "/incidents",
    "/status", "/sync?epoch=-1", "/__wdl/healthz", "/held?namespace=victim&queue=q",
    "/v1/workflows?namespace=victim", "/v1/instances?namespace=victim",
]


async def test_internal_ports_answer_nothing_without_the_token(walls: Walls) -> None:
    """Route table, host claims, health, metrics (tenant names and counts): 401 on
    every port of the platform, whatever the token's form."""
    problems = []
    for path in INTERNAL_READS:
        problems += await attack_everywhere(walls, "GET", path)
    assert not problems, "\n".join(problems)
    await walls.assert_victim_intact()


async def test_the_victims_bundle_and_secret_go_only_to_token_holders(walls: Walls) -> None:
    version = await victim_version(walls)
    path = f"/bundle?ns={VICTIM}&worker=vault&version={version}&instance=evil"
    problems = await attack_everywhere(walls, "GET", path)
    problems += await attack_everywhere(walls, "GET", path + "&tail=1")
    if walls.kind == "servers":
        # Nor is the attacker's made-up gateway process recorded as loading it.
        loads = walls.extra["platform"].state.loads
        if loads.loaded("evil"):
            problems.append(f"recorded a load for instance evil: {loads.loaded('evil')}")
    assert not problems, "\n".join(problems)
    # The control: with the token exactly one port - the state service - hands the
    # bundle out, decrypted secret included (the gateway and the DO host need it).
    holders = [port for port, r in await everywhere(walls, "GET", path, headers=OWN)
               if VICTIM_SECRET in r.text]
    assert [f"http://127.0.0.1:{p}" for p in holders] == [await state_url(walls)]
    if walls.kind == "servers":
        walls.extra["platform"].state.loads.forget("evil")  # the control's own record
    await walls.assert_victim_intact()


async def test_a_forged_lease_request_appends_nothing(walls: Walls) -> None:
    """The DO host's supervisor asks the log for a lease on `/owner`: a forged call must
    not append a `lease.acquired` for a namespace and class that do not exist."""
    ghost = f"ghost{uuid.uuid4().hex[:8]}"
    problems = await attack_everywhere(
        walls, "GET", f"/owner?namespace={ghost}&script=x&class_name=Y&shard=0")
    problems += await attack_everywhere(
        walls, "GET", f"/owner?namespace={VICTIM}&script=vault&class_name=Safe&shard=1")
    leases = json.dumps(await admin_json(walls, "lease", "show"))
    if ghost in leases:
        problems.append(f"a lease for {ghost} exists: {leases}")
    audit = json.dumps(await admin_json(walls, "audit", "--type", "lease.acquired", "--all"))
    if ghost in audit:
        problems.append(f"the log has a lease.acquired for {ghost}")
    assert not problems, "\n".join(problems)
    await walls.assert_victim_intact()


async def test_forged_markers_entries_and_incidents_blame_nobody(walls: Walls) -> None:
    """Strikes come from the gateway's round markers (`/sync`), its announced entries
    (`/enter`) and the supervisor's incidents (`/incident`): forged, they would get the
    victim quarantined. A forged push (`/__wdl/sync`) would drop a gateway's caches."""
    version = await victim_version(walls)
    forged = f"gw9-{uuid.uuid4().hex[:12]}"
    target = [VICTIM, "vault", version]
    marks = {"instance": forged, "targets": [target], "truncated": False, "done": []}
    problems = await attack_everywhere(walls, "POST", f"/sync?epoch=-1&instance={forged}",
                                       content=json.dumps(marks))
    problems += await attack_everywhere(walls, "GET",
                                        f"/sync?epoch=-1&instance={forged}&same=1")
    problems += await attack_everywhere(walls, "POST", "/enter", json={
        "instance": forged, "token": "t", "target": target, "done": []})
    problems += await attack_everywhere(walls, "POST", "/__wdl/sync", json={
        "boot": "x", "since": -1, "epoch": 1 << 40, "flush": True, "namespaces": [VICTIM],
        "hosts": True})
    instances = [forged]
    if walls.kind == "servers":
        instances += [i.name for i in walls.extra["platform"].gateway.instances()]
    for instance in instances:
        for _ in range(3):
            problems += await attack_everywhere(walls, "POST", "/incident", json={
                "instance": instance, "kind": "hang", "detail": "forged"})
    state = await state_url(walls)
    async with httpx.AsyncClient(timeout=20, headers=OWN) as client:
        # What the forged markers would have done: an incident on that instance, as its
        # supervisor would report it (with the token), blames what its rounds named.
        r = await client.post(f"{state}/incident", json={
            "instance": forged, "kind": "crash", "detail": "the suite's control"})
        assert r.status_code == 200, r.text
        if VICTIM in r.text:
            problems.append(f"the forged markers were kept: {r.text}")
        desk = (await client.get(f"{state}/incidents")).text
    if VICTIM in desk:
        problems.append(f"the watchdog's findings name the victim: {desk}")
    strikes = await admin_json(walls, "quarantine", "strikes", "--ns", VICTIM)
    if strikes:
        problems.append(f"the victim carries strikes: {strikes}")
    quarantined = await admin_json(walls, "quarantine", "list", "--ns", VICTIM)
    if quarantined:
        problems.append(f"the victim is held back: {quarantined}")
    assert not problems, "\n".join(problems)
    await walls.assert_victim_intact()


async def test_the_public_port_serves_no_platform_path(walls: Walls) -> None:
    """Every `/__wdl/` path of the gateway (health with its process names, cron, queue
    batches, workflow steps, route pushes) answers 401 on the public port, whatever
    the host."""
    problems = []
    async with httpx.AsyncClient(base_url=walls.gateway, timeout=20) as client:
        for path in workerd_paths():
            for host in (walls.host(VICTIM), "127.0.0.1", "x.example"):
                for headers in WRONG:
                    for method in ("GET", "POST"):
                        r = await client.request(method, path, headers={"host": host,
                                                                        **headers})
                        found = problem(_port(walls.gateway), path, r)
                        if found is not None:
                            problems.append(f"{host} {headers}: {found}")
        assert not problems, "\n".join(problems)
        # The control: with the token the platform's own calls still work here.
        r = await client.get("/__wdl/healthz", headers=BEARER)
        assert r.status_code == 200 and r.json()["ok"] is True
    await walls.assert_victim_intact()


def _workerd_configs(walls: Walls) -> list[Path]:
    """The config of every workerd the platform runs, as a local user finds it: the
    last argument of `workerd serve` in its (world-readable) command line."""
    configs = []
    for pid in platform_pids(walls):
        argv = procs.cmdline(pid)
        if len(argv) > 2 and argv[1] == "serve":
            configs.append(Path(next(a for a in reversed(argv) if a.endswith(".capnp"))))
    return configs


def _as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, user=NOBODY, group=NOBODY, extra_groups=[],
                          capture_output=True, text=True, timeout=30)


async def test_files_holding_the_token_are_the_platform_users_alone(walls: Walls) -> None:
    configs = _workerd_configs(walls)
    # Every gateway process and the DO host.
    assert len(configs) >= 2, configs
    if walls.kind == "servers":
        gateway = walls.extra["platform"].gateway
        assert {i.config for i in gateway.instances()} < set(configs), configs
        assert len(configs) == len(gateway.instances()) + 1, configs
    problems = []
    token_files = [p for p in (walls.data_dir / "admin.token", walls.data_dir / "internal.token")
                   if p.exists()]
    for path in [*configs, *token_files]:
        assert path.exists(), path
        if path.suffix == ".capnp":
            assert INTERNAL_TOKEN in path.read_text(), f"{path} no longer holds the token?"
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            problems.append(f"{path} is {oct(mode)}")
        folder = stat.S_IMODE(path.parent.stat().st_mode)
        if folder & 0o077 and path.parent != walls.data_dir:
            problems.append(f"{path.parent} (holding {path.name}) is {oct(folder)}")
        # And as another user of the host.
        seen = await asyncio.to_thread(_as_nobody, "cat", str(path))
        if seen.returncode == 0 or INTERNAL_TOKEN in seen.stdout:
            problems.append(f"user nobody read {path}")
    # The token is never on a command line (world-readable in /proc).
    for pid in platform_pids(walls):
        if INTERNAL_TOKEN in "\0".join(procs.cmdline(pid)):
            problems.append(f"the token is on the command line of {procs.cmdline(pid)}")
    assert not problems, "\n".join(problems)
    await walls.assert_victim_intact()


# --- every route of every internal server --------------------------------------------

@pytest.fixture(scope="module")
async def everything(services: Endpoints,
                     tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[list[Any]]:
    """Every component on the real servers (and a projector alone: its health server
    exists only without the API), recording every HTTP server they start."""
    started: list[HttpServer] = []
    original = HttpServer.start

    async def recording(self: HttpServer) -> None:
        await original(self)
        started.append(self)

    assert services.kafka_bootstrap_servers and services.redis_url
    tmp_path = tmp_path_factory.mktemp("walk")
    root_keys = generate_root_key("k-walk").export()
    name = f"walk-{uuid.uuid4().hex[:12]}"
    with new_database(services) as database, pytest.MonkeyPatch.context() as mp:
        mp.setattr(HttpServer, "start", recording)
        mp.setenv("WDL_ROOT_KEYS", root_keys)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("WDL_")},
            **services.as_env(), "WDL_TOPIC": name, "WDL_PARTITIONS": "2",
            "WDL_REDIS_PREFIX": name + ":", "DATABASE_URL": database,
            "WDL_BLOB_URL": f"s3://{name}", "WDL_ADMIN_TOKEN": "wdl_admin_walk",
            "WDL_ROOT_KEYS": root_keys, "WDL_DATA_DIR": str(tmp_path / "data"),
            "WDL_KV_URL": f"{services.redis_url}?prefix={name}-kv:",
            "WDL_R2_URL": f"s3://{name}-r2"}
        options = PlatformOptions(
            components=frozenset(COMPONENTS), internal_token=INTERNAL_TOKEN, api_port=0,
            gateway_port=0, state_port=0, data_port=0, projector_health_port=0,
            scheduler_health_port=0, gateway_processes=2, workerd_bin=services.workerd_bin,
            recycle=RecyclePolicy(interval=0))
        settings = Settings.from_env(env)
        async with Platform(settings, options) as platform, Platform(settings, replace(
                options, components=frozenset({"projector"}))) as projector:
            yield [platform, projector, started]


async def test_every_route_of_every_internal_app_requires_the_token(
        everything: list[Any]) -> None:
    platform, projector, started = everything
    servers = [s for s in started if s is not platform.api]
    names = {s.name for s in servers}
    # Every internal server kind of the platform (a new kind is walked as it comes).
    assert {"state", "data", "objects-supervisor", "gateway-health", "scheduler-health",
            "projector-health", "hyperdrive-health"} <= names, names
    assert projector.projector_health in servers
    async with httpx.AsyncClient(timeout=20) as client:
        for server in servers:
            routes = endpoints(server.app)
            assert routes, server.name
            for method, path in [*routes, ("GET", "/no-such-route"), ("POST", "/")]:
                for headers in WRONG:
                    r = await client.request(method, server.url + path, headers=headers)
                    where = f"{server.name} {method} {path} {headers}: {r.status_code}"
                    assert (r.status_code, _json(r)) == (401, UNAUTHORIZED), \
                        f"{where} {r.text[:300]}"
                    assert r.headers["www-authenticate"].startswith("Bearer"), where
            # The control: with the token (either form) no GET route is refused.
            for method, path in routes:
                if method == "GET":
                    for good in (BEARER, OWN):
                        r = await client.get(server.url + path, headers=good)
                        assert r.status_code != 401, f"{server.name} {path}: {r.text[:300]}"
        # The workerd side: every gateway process's sockets and both of the DO host's.
        sockets = [platform.gateway.url, *(i.private_url for i in platform.gateway.instances()),
                   platform.objects.url, f"http://{platform.objects.private_address}"]
        for base in sockets:
            for path in workerd_paths():
                for method in ("GET", "POST"):
                    for headers in WRONG:
                        r = await client.request(method, base + path, headers=headers)
                        assert (r.status_code, _json(r)) == (401, UNAUTHORIZED), \
                            f"{base} {method} {path} {headers}: {r.status_code} {r.text[:200]}"
            r = await client.get(base + "/__wdl/healthz", headers=BEARER)
            assert r.status_code == 200, f"{base}: {r.text[:200]}"


async def test_wdl_health_sends_the_token(everything: list[Any], tmp_path: Path) -> None:
    """`wdl health` (compose's health checks) reaches each component with the token from
    the environment; without one it is refused like anyone."""
    platform, _, _ = everything
    urls = {"state": platform.state.url + "/healthz", "data": platform.data.url + "/healthz",
            "d1": platform.d1.url + "/healthz", "objects": platform.objects.url + "/__wdl/healthz",
            "gateway": platform.gateway.url + "/__wdl/healthz",
            "queues": platform.queues.url + "/healthz",
            "workflows": platform.workflows.url + "/healthz",
            "scheduler": platform.scheduler_health.url + "/healthz"}
    base = {k: v for k, v in os.environ.items() if not k.startswith("WDL_")}
    base["WDL_DATA_DIR"] = str(tmp_path / "empty")
    for component, url in urls.items():
        for env, code in (({**base, "WDL_INTERNAL_TOKEN": INTERNAL_TOKEN}, 0), (base, 1)):
            done = await asyncio.to_thread(
                subprocess.run, [WDL, "health", component, "--url", url], env=env,
                capture_output=True, text=True, timeout=60)
            assert done.returncode == code, (component, code, done.stdout, done.stderr)


@pytest.mark.parametrize("module", ["projections", "services.scheduler"])
async def test_standalone_metrics_servers_require_the_token(
        services: Endpoints, tmp_path: Path, module: str) -> None:
    """`python -m projections` / `python -m services.scheduler` with WDL_METRICS_PORT."""
    port = free_port()
    name = f"walk-{uuid.uuid4().hex[:12]}"
    with new_database(services) as database:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("WDL_")},
               **services.as_env(), "WDL_TOPIC": name, "WDL_REDIS_PREFIX": name + ":",
               "DATABASE_URL": database, "WDL_METRICS_PORT": str(port),
               "WDL_INTERNAL_TOKEN": INTERNAL_TOKEN, "WDL_PROJECTOR_GROUP": "",
               "WDL_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
        log = tmp_path / "out.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", module, env=env, stdout=out,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            async with httpx.AsyncClient(timeout=5) as client:
                for _ in range(300):
                    assert proc.returncode is None, log.read_text()[-3000:]
                    try:
                        ok = await client.get(url, headers=BEARER)
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
                else:
                    raise AssertionError(f"no metrics server:\n{log.read_text()[-3000:]}")
                assert ok.status_code == 200 and "# TYPE" in ok.text
                for headers in WRONG:
                    r = await client.get(url, headers=headers)
                    assert (r.status_code, _json(r)) == (401, UNAUTHORIZED), \
                        f"{headers}: {r.status_code} {r.text[:200]}"
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 20)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        # Without a token it does not start an open metrics server.
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", module],
            env={**env, "WDL_INTERNAL_TOKEN": ""}, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and "WDL_INTERNAL_TOKEN" in done.stderr, done.stderr
