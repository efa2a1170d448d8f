"""Process configuration from the environment: one place, no module-level clients.

Without backend variables every process runs on embedded defaults under
`WDL_DATA_DIR` (default `.wdl/dev`): a SQLite event log, an in-process
projection store, an SQLite audit database and a local blob directory.

It lives with the projections because the projector reads it and must not
import `services`; `services.settings` re-exports it for everyone else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TOPIC = "wdl.events"
DEFAULT_PARTITIONS = 8


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    event_log_url: str
    redis_url: str | None
    redis_prefix: str
    database_url: str
    blob_url: str
    admin_token: str | None
    # Tenant data (services/kv, services/r2): apart from the projection and the bundles.
    kv_url: str = ""
    r2_url: str = ""

    @property
    def embedded(self) -> bool:
        return self.redis_url is None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, *,
                 embedded: bool | None = None) -> Settings:
        e = dict(os.environ) if env is None else env
        data_dir = Path(e.get("WDL_DATA_DIR", ".wdl/dev")).resolve()
        use_embedded = embedded if embedded is not None else not e.get("REDIS_URL")
        partitions = int(e.get("WDL_PARTITIONS", str(DEFAULT_PARTITIONS)))
        topic = e.get("WDL_TOPIC", DEFAULT_TOPIC)
        if use_embedded:
            log_url = e.get("WDL_EVENT_LOG") or (
                f"sqlite://{data_dir / 'events.db'}?partitions={partitions}")
            return cls(
                data_dir=data_dir, event_log_url=log_url, redis_url=None,
                redis_prefix=e.get("WDL_REDIS_PREFIX", "wdl:"),
                database_url=e.get("WDL_AUDIT_URL") or f"sqlite:///{data_dir / 'audit.sqlite'}",
                blob_url=e.get("WDL_BLOB_URL") or f"file://{data_dir / 'blobs'}",
                admin_token=e.get("WDL_ADMIN_TOKEN") or None,
                kv_url=e.get("WDL_KV_URL") or f"sqlite:///{data_dir / 'kv.sqlite'}",
                r2_url=e.get("WDL_R2_URL") or f"file://{data_dir / 'r2'}",
            )
        bootstrap = e.get("KAFKA_BOOTSTRAP_SERVERS")
        log_url = e.get("WDL_EVENT_LOG") or (
            f"kafka://{bootstrap}?topic={topic}&partitions={partitions}" if bootstrap else "")
        missing = [name for name, value in (
            ("KAFKA_BOOTSTRAP_SERVERS or WDL_EVENT_LOG", log_url),
            ("DATABASE_URL", e.get("DATABASE_URL")),
        ) if not value]
        if missing:
            raise ValueError(f"missing configuration: {', '.join(missing)}")
        return cls(
            data_dir=data_dir, event_log_url=log_url, redis_url=e["REDIS_URL"],
            redis_prefix=e.get("WDL_REDIS_PREFIX", "wdl:"),
            database_url=e["DATABASE_URL"],
            blob_url=e.get("WDL_BLOB_URL") or f"s3://{e.get('WDL_BUCKET', 'wdl-bundles')}",
            admin_token=e.get("WDL_ADMIN_TOKEN") or None,
            # KV values in the same Redis, under their own prefix (never `wdl:`).
            kv_url=e.get("WDL_KV_URL") or _with_query(e["REDIS_URL"], "prefix=wdlkv:"),
            r2_url=e.get("WDL_R2_URL") or f"s3://{e.get('WDL_R2_BUCKET', 'wdl-r2')}",
        )


def _with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"
