"""Where the real servers are: read from the environment or `.wdl/services.env`."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES_ENV = ROOT / ".wdl" / "services.env"

ENV_KEYS = {
    "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "redis_url": "REDIS_URL",
    "database_url": "DATABASE_URL",
    "s3_endpoint_url": "S3_ENDPOINT_URL",
    "s3_access_key_id": "S3_ACCESS_KEY_ID",
    "s3_secret_access_key": "S3_SECRET_ACCESS_KEY",
    "workerd_bin": "WORKERD_BIN",
}


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap_servers: str | None = None
    redis_url: str | None = None
    database_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    workerd_bin: str | None = None

    def missing(self) -> list[str]:
        return [ENV_KEYS[f.name] for f in fields(self) if getattr(self, f.name) is None]

    def as_env(self) -> dict[str, str]:
        return {
            ENV_KEYS[f.name]: str(getattr(self, f.name))
            for f in fields(self)
            if getattr(self, f.name) is not None
        }


def parse_env_file(path: Path) -> dict[str, str]:
    """Parse shell `KEY=value` lines (optionally quoted, `export` allowed)."""
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def load(env_file: Path | None = SERVICES_ENV) -> Endpoints:
    """Process environment wins over the env file, so CI can point anywhere."""
    file_values = parse_env_file(env_file) if env_file is not None else {}
    values: dict[str, str | None] = {}
    for attr, key in ENV_KEYS.items():
        values[attr] = os.environ.get(key) or file_values.get(key)
    return Endpoints(**values)
