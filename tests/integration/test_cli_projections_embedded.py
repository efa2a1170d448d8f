"""`wdl projections status|verify|rebuild` tell the truth about an embedded platform (issue 14).

The embedded projection lives in memory inside the platform's process: the CLI
must act on *that* projection through the control API, or refuse saying why —
never check a fresh empty store of its own and print "ok".
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import httpx

from harness.endpoints import Endpoints
from projections import keys
from projections.changes import Changes
from services.dataplane.workerd_process import free_port
from services.platform import Platform, PlatformOptions
from services.settings import Settings
from tests.integration.test_cli_projections import _wdl

TOKEN = "wdl_admin_embedded_projection_test"
EMPTY = hashlib.sha256(b"").hexdigest()


def cli_env(tmp_path: Path, url: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("WDL_") and k not in (
        "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")}
    return {**base, "WDL_DATA_DIR": str(tmp_path / "cli-data"), "WDL_CONTROL_URL": url,
            "WDL_TOKEN": TOKEN, "WDL_CONFIG": str(tmp_path / "none.toml")}


async def projections(environ: dict[str, str], *args: str) -> tuple[int, str, str]:
    return await _wdl(environ, *args)


async def test_status_verify_and_rebuild_act_on_the_running_embedded_platform(
        tmp_path: Path, services: Endpoints) -> None:
    settings = Settings.from_env({"WDL_DATA_DIR": str(tmp_path / "data"),
                                  "WDL_ADMIN_TOKEN": TOKEN}, embedded=True)
    options = PlatformOptions(api_port=0, gateway_port=0, state_port=0, data_port=0,
                              workerd_bin=services.workerd_bin, gateway_processes=1)
    async with Platform(settings, options) as platform:
        assert platform.api is not None
        url = platform.api.url
        async with httpx.AsyncClient(base_url=url, timeout=30,
                                     headers={"authorization": f"Bearer {TOKEN}"}) as api:
            for name in ("alpha", "beta", "gamma"):
                (await api.post("/v1/namespaces", json={"name": name})).raise_for_status()
        environ = cli_env(tmp_path, url)

        code, out, err = await projections(environ, "status", "--json")
        assert code == 0, err
        rows = json.loads(out)
        assert sum(r["applied"] for r in rows if r["projection"] == "redis") >= 3

        code, out, err = await projections(environ, "verify", "--json")
        assert code == 0, err
        report = json.loads(out)
        assert report["ok"] and report["digest"] != EMPTY
        assert sum(report["positions"].values()) >= 3

        # Tamper with the live embedded projection: verify must see it.
        store = platform.api.app.state.ctx.store
        generation = await store.current_generation()
        tampered = Changes()
        tampered.set(keys.NAMESPACES, "beta", json.dumps({"tampered": True}))
        await store.apply(generation, tampered, {})
        code, out, err = await projections(environ, "verify")
        assert code == 1 and "DIFFERENT" in err, err

        # A rebuild in place repairs it, and verify agrees again.
        code, out, err = await projections(environ, "rebuild", "--json")
        assert code == 0, err
        assert json.loads(out)["switched"] is True
        code, out, err = await projections(environ, "verify", "--json")
        assert code == 0 and json.loads(out)["ok"], err
        assert "tampered" not in (await store.hget(keys.NAMESPACES, "beta") or "")

        # Options that need the real backends are refused, not ignored.
        code, _, err = await projections(environ, "rebuild", "--until", "0:1")
        assert code == 2 and "need the backends" in err


async def test_without_a_running_platform_they_refuse_and_say_why(tmp_path: Path) -> None:
    environ = cli_env(tmp_path, f"http://127.0.0.1:{free_port()}")
    for command in ("status", "verify", "rebuild"):
        code, out, err = await projections(environ, command)
        assert code == 1, (command, out, err)
        assert "embedded projection lives inside the running `wdl dev`" in err.replace("\n", " ")
        assert EMPTY not in out + err
