"""`wdl projections …` as an operator runs it: a real process against the real servers."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable

from eventlog import events as ev
from eventlog.kafka import KafkaEventLog, KafkaSettings
from harness.endpoints import ROOT, Endpoints
from projections import keys
from projections.redis_store import RedisProjectionStore
from tests.factories import env, upload


async def _wdl(environ: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", "projections", *args, cwd=ROOT, env=environ,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_status_rebuild_verify_and_a_detected_difference(
        services: Endpoints, fresh_database: str, unique_name: Callable[[str], str]) -> None:
    assert services.kafka_bootstrap_servers and services.redis_url
    topic, prefix = unique_name("cli"), f"{unique_name('cli')}:"
    environ = {**os.environ, **services.as_env(), "DATABASE_URL": fresh_database,
               "WDL_TOPIC": topic, "WDL_PARTITIONS": "3", "WDL_REDIS_PREFIX": prefix}
    async with KafkaEventLog(KafkaSettings(bootstrap_servers=services.kafka_bootstrap_servers,
                                           topic=topic, partitions=3)) as log:
        await log.append_many([
            env(ev.NamespaceCreated(namespace="acme")),
            env(upload("acme", "api", "v1")),
            env(ev.VersionPromoted(namespace="acme", worker="api", version_id="v1")),
        ])
        await log.append(env(ev.VersionPromoted(namespace="acme", worker="api",
                                                version_id="v9")))  # rejected: unknown
    code, out, _ = await _wdl(environ, "status", "--json")
    assert code == 0
    lags = {(r["projection"], r["partition"]): r["lag"] for r in json.loads(out)}
    assert sum(lags.values()) == 8  # nothing projected yet: 4 events, 2 projections

    code, out, err = await _wdl(environ, "rebuild", "--json", "--grace", "0")
    assert code == 0, err
    report = json.loads(out)
    assert report["switched"] and report["events"] == 4 and report["dead_letters"] == 0

    code, out, _ = await _wdl(environ, "verify", "--json")
    assert code == 0 and json.loads(out)["ok"] is True

    async with RedisProjectionStore(services.redis_url, prefix=prefix) as store:
        assert await store.hget(keys.routes("acme"), "api") == "v1"
        gen = await store.current_generation()
        await store.client.hset(store.key(gen, keys.routes("acme")), "api", "tampered")
    code, out, _ = await _wdl(environ, "verify", "--json")
    assert code == 1
    assert any("routes:acme [api]" in d for d in json.loads(out)["differences"])

    # A rebuild repairs it, then verify is clean again.
    code, _, err = await _wdl(environ, "rebuild", "--grace", "0")
    assert code == 0, err
    code, _, _ = await _wdl(environ, "verify")
    assert code == 0


async def test_bad_until_is_a_usage_error(services: Endpoints, fresh_database: str) -> None:
    environ = {**os.environ, **services.as_env(), "DATABASE_URL": fresh_database}
    code, _, err = await _wdl(environ, "rebuild", "--until", "yesterday-ish")
    assert code == 2 and "partition:offset" in err
