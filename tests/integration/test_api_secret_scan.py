"""A planted secret value never appears in Kafka, Redis, PostgreSQL or the logs.

The value goes in through the API (worker and namespace scope, plus malformed
requests that carry it), and then every record of the topic, every key under
the Redis prefix, every row of every table of the database and the API and
projector process logs are scanned for it. The sealed copy in Redis must
still open to it with the root key, so the scan looks where the value is.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

from eventlog.events import SealedSecret
from eventlog.kafka import KafkaEventLog, KafkaSettings
from harness.endpoints import Endpoints
from services.api.launcher import ControlStack, stack_env
from services.crypto.config import parse_root_keys
from services.crypto.context import SecretContext
from services.crypto.rootkey import RootKey


@pytest.fixture
def stack(services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
          tmp_path: Path) -> Iterator[ControlStack]:
    env = stack_env(services.as_env(), topic=unique_name("sec"), partitions=4,
                    redis_prefix=f"{unique_name('s')}:", database_url=fresh_database,
                    bucket=unique_name("b"), admin_token=f"adm-{secrets.token_hex(16)}",
                    root_keys=RootKey.generate().export())
    with ControlStack(env, tmp_path / "procs") as s:
        yield s


def needles(value: str) -> list[bytes]:
    raw = value.encode()
    return [raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw), raw.hex().encode()]


def test_planted_secret_is_absent_from_every_store_and_log(stack: ControlStack) -> None:
    plant = f"planted-{secrets.token_hex(20)}"
    ns_plant = f"nsplant-{secrets.token_hex(20)}"
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    code = base64.b64encode(b"export default { fetch() { return new Response('x') } }").decode()
    with httpx.Client(base_url=stack.url, headers=headers, timeout=30) as http:
        assert http.post("/v1/namespaces", json={"name": "vault"}).status_code == 201
        r = http.post("/v1/namespaces/vault/workers/api/versions?promote=true", json={
            "main_module": "index.js", "compatibility_date": "2025-06-01",
            "modules": [{"name": "index.js", "content_b64": code}],
            "bindings": [{"name": "DB_PASSWORD", "kind": "secret", "target": "DB_PASSWORD"}]})
        assert r.status_code == 201, r.text
        r = http.put("/v1/namespaces/vault/workers/api/secrets/DB_PASSWORD",
                     json={"value": plant})
        assert r.status_code == 200 and plant not in r.text
        r = http.put("/v1/namespaces/vault/secrets/SHARED", json={"value": ns_plant})
        assert r.status_code == 200
        # Malformed requests that carry the value must not echo it back.
        refusals = [
            http.put("/v1/namespaces/vault/workers/api/secrets/not-an-identifier",
                     json={"value": plant}),
            http.put("/v1/namespaces/vault/workers/api/secrets/OK", json={"value": plant,
                                                                         "extra": plant}),
            http.put("/v1/namespaces/vault/workers/api/secrets/OK", json={"value": [plant]}),
            http.put("/v1/namespaces/vault/workers/nobody/secrets/OK", json={"value": plant}),
            http.put("/v1/namespaces/vault/workers/api/secrets/OK",
                     content=b'{"value": "' + plant.encode() + b'"', headers={
                         "Content-Type": "application/json"}),
        ]
        for refused in refusals:
            assert refused.status_code in (400, 404, 422), refused.text
            assert plant not in refused.text
        listed = http.get("/v1/namespaces/vault/workers/api/secrets").json()
        assert [s["name"] for s in listed] == ["DB_PASSWORD"]
        assert plant not in http.get("/v1/audit", params={"namespace": "vault"}).text
        assert plant not in http.get("/v1/namespaces/vault/workers/api/history").text
    stack.stop()  # flush and close the logs before scanning them

    env = stack.env
    keyring = parse_root_keys(env["WDL_ROOT_KEYS"])
    scanned = {"kafka": 0, "redis": 0, "postgres": 0}

    async def scan_kafka() -> None:
        async with KafkaEventLog(KafkaSettings(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
                                               topic=env["WDL_TOPIC"])) as log:
            async for record in log.read():
                scanned["kafka"] += 1
                for needle in needles(plant) + needles(ns_plant):
                    assert needle not in record.raw, f"found in Kafka at {record.position}"

    asyncio.run(scan_kafka())

    sealed_doc = None
    rc: Any = redis.Redis.from_url(env["REDIS_URL"])
    for key in rc.scan_iter(match=f"{env['WDL_REDIS_PREFIX']}*", count=1000):
        kind = rc.type(key)
        blobs: list[bytes] = [key]
        if kind == b"hash":
            for name, value in rc.hgetall(key).items():
                blobs += [name, value]
                if key.endswith(b":secrets:vault/api") and name == b"DB_PASSWORD":
                    sealed_doc = value
        elif kind == b"string":
            blobs.append(rc.get(key) or b"")
        elif kind == b"set":
            blobs += list(rc.smembers(key))
        scanned["redis"] += 1
        for blob in blobs:
            for needle in needles(plant) + needles(ns_plant):
                assert needle not in blob, f"found in Redis key {key!r}"
    rc.close()
    # The sealed copy is there and opens to the value: the scan looked in the right place.
    assert sealed_doc is not None
    doc = json.loads(sealed_doc)
    sealed = SealedSecret(key_id=doc["key_id"], wrapped_key=base64.b64decode(doc["wrapped_key"]),
                          nonce=base64.b64decode(doc["nonce"]),
                          ciphertext=base64.b64decode(doc["ciphertext"]),
                          algorithm=doc["algorithm"])
    assert keyring.open(SecretContext("vault", "api", "DB_PASSWORD"), sealed) == plant.encode()

    with psycopg.connect(env["DATABASE_URL"]) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') "
            "AND table_type = 'BASE TABLE'").fetchall()
        assert any(name == "audit_events" for _, name in tables)
        for schema, name in tables:
            rows = conn.execute(f'SELECT t::text FROM "{schema}"."{name}" t').fetchall()
            for (text,) in rows:
                scanned["postgres"] += 1
                for needle in needles(plant) + needles(ns_plant):
                    assert needle.decode() not in text, f"found in {schema}.{name}"

    logs = stack.logs()
    # The logs were kept and name the command (the API logs no access line by default).
    assert "appended secret.put" in logs
    for needle in needles(plant) + needles(ns_plant):
        assert needle.decode() not in logs
    assert scanned["kafka"] >= 5 and scanned["redis"] >= 5 and scanned["postgres"] >= 5
