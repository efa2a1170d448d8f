"""Fixtures of the security suite: `walls`, one attacker beside one victim, on the real
servers and on `wdl dev` (each test module runs against both, one platform per shape
and module: attacks must change nothing, so the tests of a module can share one)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.endpoints import Endpoints
from services.dataplane.gateway import RecyclePolicy
from services.platform import Platform, PlatformOptions
from services.settings import Settings
from tests.conftest import new_database
from tests.integration.test_dataplane_dev import Dev
from tests.platform_stack import ADMIN, servers_env
from tests.security.rig import INTERNAL_TOKEN, Actor, Walls, seed_victim, set_the_scene

SERVER_COMPONENTS = frozenset({"api", "projector", "state", "data", "gateway", "d1", "objects"})


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def _servers(services: Endpoints, tmp: Path, extra_env: dict[str, str],
                   components: frozenset[str] = SERVER_COMPONENTS) -> AsyncIterator[Walls]:
    with new_database(services) as database, pytest.MonkeyPatch.context() as mp:
        env = {**servers_env(services, database, _name, tmp), **extra_env}
        mp.setenv("WDL_ROOT_KEYS", env["WDL_ROOT_KEYS"])
        for key, value in extra_env.items():
            mp.setenv(key, value)  # read from the environment by the components too
        options = PlatformOptions(components=components, internal_token=INTERNAL_TOKEN,
                                  api_port=0, gateway_port=0, state_port=0, data_port=0,
                                  scheduler_health_port=0,
                                  workerd_bin=services.workerd_bin,
                                  recycle=RecyclePolicy(interval=0))
        async with Platform(Settings.from_env(env), options) as platform:
            assert platform.gateway is not None and platform.api is not None
            cli_env = {**env, "WDL_CONTROL_URL": platform.api.url, "WDL_TOKEN": ADMIN,
                       "WDL_CONFIG": str(tmp / "no-config.toml")}
            admin = Actor("admin", cli_env, tmp)
            (tmp / "attacker").mkdir()
            attacker = await set_the_scene(admin, tmp / "attacker")
            await seed_victim(platform.gateway.url)
            internals = {name: server.url for name, server in (
                ("state", platform.state), ("data", platform.data)) if server is not None}
            yield Walls("servers", platform.gateway.url, platform.api.url, tmp / "data",
                        admin, attacker, INTERNAL_TOKEN, internals,
                        extra={"platform": platform})


async def _dev(services: Endpoints, tmp: Path,
               extra_env: dict[str, str]) -> AsyncIterator[Walls]:
    assert services.workerd_bin
    dev = Dev(tmp / "data", services.workerd_bin)
    dev.env["WDL_INTERNAL_TOKEN"] = INTERNAL_TOKEN
    dev.env.update(extra_env)
    try:
        dev.start()
        token = (tmp / "data" / "admin.token").read_text().strip()
        cli_env = {**dev.env, "WDL_CONTROL_URL": f"http://127.0.0.1:{dev.api_port}",
                   "WDL_TOKEN": token, "WDL_CONFIG": str(tmp / "no-config.toml")}
        admin = Actor("admin", cli_env, tmp)
        (tmp / "attacker").mkdir()
        attacker = await set_the_scene(admin, tmp / "attacker")
        gateway = f"http://127.0.0.1:{dev.gateway_port}"
        await seed_victim(gateway)
        yield Walls("dev", gateway, f"http://127.0.0.1:{dev.api_port}", tmp / "data", admin,
                    attacker, INTERNAL_TOKEN, extra={"dev": dev})
    finally:
        dev.kill()


@pytest.fixture(scope="module")
def walls_env() -> dict[str, str]:
    """More environment for the platform under attack (both shapes), known only at run
    time; a test module overrides this fixture (e.g. the address of its DNS server)."""
    return {}


@pytest.fixture(scope="module", params=["servers", "dev"])
async def walls(request: pytest.FixtureRequest, services: Endpoints,
                tmp_path_factory: pytest.TempPathFactory,
                walls_env: dict[str, str]) -> AsyncIterator[Walls]:
    """An attacker (deployer token scoped to `attacker`) beside a seeded victim. A test
    module may set `WALLS_ENV` (a dict) to configure the platform it runs against, or
    override the `walls_env` fixture when the values exist only at run time, and set
    `WALLS_COMPONENTS` (names) to run more components on the servers shape (`wdl dev`
    runs them all)."""
    tmp = tmp_path_factory.mktemp(f"walls-{request.param}")
    extra_env = {**getattr(request.module, "WALLS_ENV", {}), **walls_env}
    if request.param == "servers":
        components = SERVER_COMPONENTS | frozenset(getattr(request.module, "WALLS_COMPONENTS",
                                                           ()))
        async for walls in _servers(services, tmp, extra_env, components):
            yield walls
    else:
        async for walls in _dev(services, tmp, extra_env):
            yield walls
