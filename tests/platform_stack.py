"""A whole platform in-process on the real servers, driven by the real `wdl` CLI.

Used by the data-plane and scheduler integration tests: control API with its
projector, state service and gateway workerd over Kafka, Redis, PostgreSQL
and S3 (`wdl up` components, in this process).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.endpoints import ROOT, Endpoints
from services.crypto import generate_root_key
from services.dataplane.gateway import RecyclePolicy
from services.platform import Platform, PlatformOptions
from services.settings import Settings

WDL = str(Path(sys.executable).with_name("wdl"))
ADMIN = "wdl_admin_dataplane_test_token"
HELLO = ROOT / "examples" / "hello"


@dataclass
class Stack:
    platform: Platform
    gateway: str
    api: str
    env: dict[str, str]
    tmp: Path
    backend_env: dict[str, str]

    async def wdl(self, *args: str, stdin: str | None = None, ok: bool = True) -> str:
        proc = await asyncio.create_subprocess_exec(
            WDL, *args, env=self.env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        if ok and proc.returncode != 0:
            raise AssertionError(f"wdl {' '.join(args)} failed ({proc.returncode}): "
                                 f"{err.decode()}{out.decode()}")
        return out.decode()

    async def deploy(self, ns: str, project: Path, *extra: str) -> str:
        out = await self.wdl("deploy", str(project), "--ns", ns, "--json", *extra)
        return str(json.loads(out)["version_id"])

    def project(self, name: str, body_js: str) -> Path:
        directory = self.tmp / f"{name}-{abs(hash(body_js)) % 10**8}"
        (directory / "src").mkdir(parents=True, exist_ok=True)
        (directory / "wrangler.toml").write_text(
            f'name = "{name}"\nmain = "src/index.js"\ncompatibility_date = "2025-06-01"\n')
        (directory / "src" / "index.js").write_text(body_js)
        return directory


def answer(text: str) -> str:
    """A worker that answers `text` and the path it saw."""
    return ("export default { async fetch(req) { const u = new URL(req.url); "
            f"return new Response({json.dumps(text)} + ' ' + u.pathname + u.search); }} }};")


def servers_env(services: Endpoints, database: str, unique_name: Callable[[str], str],
                tmp_path: Path) -> dict[str, str]:
    """A platform's environment on the real servers, with a log, projection, blobs and
    tenant data of its own (names from `unique_name`) and a fresh root key."""
    assert services.kafka_bootstrap_servers and services.redis_url
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("WDL_")},
        **services.as_env(),
        "WDL_TOPIC": unique_name("dp"), "WDL_PARTITIONS": "4",
        "WDL_REDIS_PREFIX": unique_name("dp") + ":", "DATABASE_URL": database,
        "WDL_BLOB_URL": f"s3://{unique_name('dp')}", "WDL_ADMIN_TOKEN": ADMIN,
        "WDL_ROOT_KEYS": generate_root_key("k-test").export(),
        "WDL_DATA_DIR": str(tmp_path / "data"),
        # Tenant data of this platform only: its own KV prefix and R2 bucket.
        "WDL_KV_URL": f"{services.redis_url}?prefix={unique_name('kv')}:",
        "WDL_R2_URL": f"s3://{unique_name('r2')}",
    }


@contextlib.asynccontextmanager
async def platform_stack(services: Endpoints, fresh_database: str,
                         unique_name: Callable[[str], str], tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch,
                         components: frozenset[str] = frozenset(
                             {"api", "projector", "state", "data", "gateway"}),
                         internal_token: str = "wdl-internal-test-token",
                         egress_allow_loopback: bool = False,
                         workflows_url: str | None = None,
                         gateway_processes: int | None = None,
                         ) -> AsyncIterator[Stack]:
    env = servers_env(services, fresh_database, unique_name, tmp_path)
    monkeypatch.setenv("WDL_ROOT_KEYS", env["WDL_ROOT_KEYS"])
    settings = Settings.from_env(env)
    options = PlatformOptions(components=components, internal_token=internal_token,
                              api_port=0, gateway_port=0, state_port=0, data_port=0,
                              egress_allow_loopback=egress_allow_loopback,
                              workflows_url=workflows_url,
                              workerd_bin=services.workerd_bin,
                              gateway_processes=gateway_processes,
                              recycle=RecyclePolicy(interval=0),
                              # Claims route without a DNS proof (tests/security proves them).
                              host_verification=False)
    async with Platform(settings, options) as platform:
        assert platform.gateway is not None and platform.api is not None
        cli_env = {**env, "WDL_CONTROL_URL": platform.api.url, "WDL_TOKEN": ADMIN,
                   "WDL_CONFIG": str(tmp_path / "no-config.toml")}
        yield Stack(platform, platform.gateway.url, platform.api.url, cli_env, tmp_path, env)


