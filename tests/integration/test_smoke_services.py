"""Prove each server is the real thing by using the features an imitation lacks."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import boto3
import httpx
import psycopg
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from botocore.config import Config
from botocore.exceptions import ClientError

from harness.endpoints import Endpoints


async def _create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def _consume_committed(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: list[bytes] = []
    try:
        while len(got) < count:
            batch = await consumer.getmany(timeout_ms=10_000)
            if not batch:
                break
            for records in batch.values():
                got.extend(r.value for r in records if r.value is not None)
    finally:
        await consumer.stop()
    return got


async def test_kafka_idempotent_producer_and_transaction(
    services: Endpoints, unique_name: Callable[[str], str]
) -> None:
    bootstrap = services.kafka_bootstrap_servers
    assert bootstrap is not None
    topic = unique_name("smoke")
    await _create_topic(bootstrap, topic)

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, b"plain", key=b"k")
        assert meta.offset == 0
    finally:
        await producer.stop()

    tx = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=unique_name("tx"), enable_idempotence=True
    )
    await tx.start()
    try:
        async with tx.transaction():
            await tx.send(topic, b"committed-1", key=b"k")
            await tx.send(topic, b"committed-2", key=b"k")
        # An aborted transaction must be invisible to read_committed consumers:
        # something a mock broker would not bother to implement.
        await tx.begin_transaction()
        await tx.send(topic, b"aborted", key=b"k")
        await tx.abort_transaction()
        async with tx.transaction():
            await tx.send(topic, b"committed-3", key=b"k")
    finally:
        await tx.stop()

    values = await _consume_committed(bootstrap, topic, 4)
    assert values == [b"plain", b"committed-1", b"committed-2", b"committed-3"]


async def test_redis_multi_exec_is_atomic(services: Endpoints) -> None:
    assert services.redis_url is not None
    client = aioredis.Redis.from_url(services.redis_url)
    key = f"smoke:{uuid.uuid4().hex}"
    try:
        async with client.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"a": "1", "b": "2"})
            pipe.expire(key, 60)
            pipe.hgetall(key)
            results = await pipe.execute()
        assert results[2] == {b"a": b"1", b"b": b"2"}
        # WATCH makes a concurrent change abort the transaction.
        async with client.pipeline(transaction=True) as pipe:
            await pipe.watch(key)
            await client.hset(key, "a", "changed-by-someone-else")
            pipe.multi()
            pipe.hset(key, "a", "mine")
            with pytest.raises(aioredis.WatchError):
                await pipe.execute()
        assert await client.hget(key, "a") == b"changed-by-someone-else"
        info = await client.info("server")
        assert str(info["redis_version"]).startswith("7.")
    finally:
        await client.delete(key)
        await client.aclose()


def test_postgres_transaction_rolls_back(fresh_database: str) -> None:
    with psycopg.connect(fresh_database) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        assert version is not None and str(version[0]).startswith("15")
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        conn.commit()
        with pytest.raises(psycopg.errors.UniqueViolation), conn.transaction():
            conn.execute("INSERT INTO t VALUES (1)")
            conn.execute("INSERT INTO t VALUES (1)")
        row = conn.execute("SELECT count(*) FROM t").fetchone()
        assert row is not None and row[0] == 0


def _s3(services: Endpoints, secret: str | None = None) -> object:
    return boto3.client(
        "s3",
        endpoint_url=services.s3_endpoint_url,
        aws_access_key_id=services.s3_access_key_id,
        aws_secret_access_key=secret or services.s3_secret_access_key,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", retries={"max_attempts": 1}),
    )


def test_s3_put_get_presign_and_refuses_bad_signature(
    services: Endpoints, unique_name: Callable[[str], str]
) -> None:
    s3 = _s3(services)
    bucket = unique_name("smoke")
    body = uuid.uuid4().bytes * 1000
    s3.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    try:
        s3.put_object(Bucket=bucket, Key="blob", Body=body)  # type: ignore[attr-defined]
        got = s3.get_object(Bucket=bucket, Key="blob")["Body"].read()  # type: ignore[attr-defined]
        assert got == body

        url = s3.generate_presigned_url(  # type: ignore[attr-defined]
            "get_object", Params={"Bucket": bucket, "Key": "blob"}, ExpiresIn=60
        )
        assert httpx.get(url).content == body
        # A presigned URL for another key must not verify: the server checks signatures.
        assert httpx.get(url.replace("/blob?", "/other?", 1)).status_code == 403
        assert httpx.get(f"{services.s3_endpoint_url}/{bucket}/blob").status_code == 403

        wrong = _s3(services, secret="not-the-secret-" + uuid.uuid4().hex)
        with pytest.raises(ClientError) as err:
            wrong.get_object(Bucket=bucket, Key="blob")  # type: ignore[attr-defined]
        assert err.value.response["Error"]["Code"] in {"SignatureDoesNotMatch", "AccessDenied"}
    finally:
        s3.delete_object(Bucket=bucket, Key="blob")  # type: ignore[attr-defined]
        s3.delete_bucket(Bucket=bucket)  # type: ignore[attr-defined]
