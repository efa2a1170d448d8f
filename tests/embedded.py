"""`wdl dev`'s shape for a test: every component in one process on embedded backends (the
real workerd of `services`; the servers' variables are cleared for this process), with a
wrangler project deployed through the `wdl` CLI into the namespace `emb`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from harness.endpoints import Endpoints
from services.components import COMPONENTS
from services.platform import Platform, PlatformOptions
from services.settings import Settings
from tests.platform_stack import ADMIN
from tests.wdl_cli import wdl

NAMESPACE = "emb"
SERVER_VARIABLES = ("REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "WDL_WORKFLOW_LOG", "WDL_QUEUE_LOG")


@contextlib.asynccontextmanager
async def embedded_platform(
        services: Endpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *,
        project: Path, internal_token: str,
) -> AsyncIterator[tuple[Platform, Callable[..., Awaitable[str]]]]:
    """The running platform (gateway and API up) and `wdl` against it (`cli(*args)`)."""
    env = {"WDL_DATA_DIR": str(tmp_path / "data"), "WDL_ADMIN_TOKEN": ADMIN}
    for key in SERVER_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    settings = Settings.from_env(env, embedded=True)
    options = PlatformOptions(components=frozenset(COMPONENTS), api_port=0, gateway_port=0,
                              state_port=0, data_port=0, scheduler_health_port=0,
                              projector_health_port=0, internal_token=internal_token,
                              egress_allow_loopback=True, workerd_bin=services.workerd_bin)
    async with Platform(settings, options) as platform:
        assert platform.gateway is not None and platform.api is not None
        env_cli = {**{k: v for k, v in os.environ.items() if not k.startswith("WDL_")},
                   "WDL_CONTROL_URL": platform.api.url, "WDL_TOKEN": ADMIN,
                   "WDL_CONFIG": str(tmp_path / "none.toml")}

        async def cli(*args: str) -> str:
            return await wdl(env_cli, *args)

        await cli("ns", "create", NAMESPACE)
        await cli("deploy", str(project), "--ns", NAMESPACE)
        yield platform, cli
