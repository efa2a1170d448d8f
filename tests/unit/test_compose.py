"""compose.yaml is the production-shaped stack; keep it coherent as services appear."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.endpoints import ROOT

BACKENDS = {"kafka", "redis", "postgres", "minio"}


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_every_service_has_image_or_build_and_healthcheck() -> None:
    services = _compose()["services"]
    assert set(services) >= BACKENDS
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        assert svc.get("healthcheck", {}).get("test"), f"{name} lacks a healthcheck"


def test_platform_services_point_at_the_backends() -> None:
    services = _compose()["services"]
    platform = {n: s for n, s in services.items() if n not in BACKENDS}
    assert platform, "no platform services in compose.yaml"
    for name, svc in platform.items():
        env = svc["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"].split(":")[0] == "kafka", name
        assert env["REDIS_URL"].startswith("redis://redis:"), name
        assert "@postgres:5432/" in env["DATABASE_URL"], name
        assert env["S3_ENDPOINT_URL"] == "http://minio:9000", name
        assert env["S3_ACCESS_KEY_ID"] == services["minio"]["environment"]["MINIO_ROOT_USER"]
        deps = svc["depends_on"]
        for backend in BACKENDS:
            assert deps[backend]["condition"] == "service_healthy", (name, backend)
        if "build" in svc:
            assert (ROOT / "Dockerfile").exists()


def test_backend_credentials_agree() -> None:
    services = _compose()["services"]
    pg_env = services["postgres"]["environment"]
    for name, svc in services.items():
        url = svc.get("environment", {}).get("DATABASE_URL") if isinstance(
            svc.get("environment"), dict) else None
        if url:
            assert f"{pg_env['POSTGRES_USER']}:{pg_env['POSTGRES_PASSWORD']}@" in url, name
    assert Path(ROOT / "compose.yaml").is_file()


def test_platform_commands_exist_in_the_cli() -> None:
    from typer.main import get_command

    from cli.main import app
    from services.components import COMPONENTS

    services = _compose()["services"]
    root = get_command(app)
    for name, svc in services.items():
        command = svc.get("command")
        if not command or command[0] != "wdl":
            continue
        assert command[1] in root.commands, (name, command)  # type: ignore[attr-defined]
        if "--only" in command:
            assert command[command.index("--only") + 1] in COMPONENTS, name
        health = svc["healthcheck"]["test"]
        if health[1] == "wdl":
            assert health[2] == "health" and health[3] in COMPONENTS, name


def test_each_component_command_is_one_the_platform_accepts(tmp_path: Path) -> None:
    """What `wdl up --only X ...` checks before starting, for every compose service."""
    from services.platform import Platform, PlatformOptions
    from services.settings import Settings

    services = _compose()["services"]
    checked = 0
    for svc in services.values():
        command = svc.get("command") or []
        if command[:2] != ["wdl", "up"] or "--only" not in command:
            continue

        def flag(option: str, cmd: list[str] = command) -> str | None:
            return cmd[cmd.index(option) + 1] if option in cmd else None

        env = {k: str(v) for k, v in svc["environment"].items()}
        settings = Settings.from_env({**env, "WDL_DATA_DIR": str(tmp_path)})
        only = flag("--only")
        assert only is not None
        Platform(settings, PlatformOptions(components=frozenset(only.split(",")),
                                           state_url=flag("--state-url"),
                                           data_url=flag("--data-url")))
        checked += 1
    assert checked >= 5
