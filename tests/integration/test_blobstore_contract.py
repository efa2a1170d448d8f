"""One contract for every BlobStore adapter, run unchanged against each of them.

S3 runs against the real versitygw server of the test services (a fresh
bucket per test, created by the store itself); the local adapter against a
temp directory. Corruption is planted behind the store's back with the raw
backend (a plain boto3 `put_object`, or a file write). Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from harness.endpoints import Endpoints
from services.blobstore import (
    BlobCorrupt,
    BlobNotFound,
    BlobStore,
    BlobStoreConfigError,
    BlobStoreNotStarted,
    BlobStoreUnavailable,
    BlobTooLarge,
    DigestMismatch,
    InvalidDigest,
    LocalBlobStore,
    S3BlobStore,
    S3Settings,
    blob_key,
    open_blob_store,
)

pytestmark = pytest.mark.integration


@dataclass
class Backend:
    """A fresh backing store, plus raw access to it that bypasses the port."""

    kind: str
    url: str
    environ: dict[str, str]
    plant: Callable[[str, bytes], None]  # write raw bytes under a key
    raw_keys: Callable[[], set[str]]

    def open(self) -> BlobStore:
        """A new, not yet started store on the same backing store."""
        return open_blob_store(self.url, environ=self.environ)


def _raw_s3(services: Endpoints, secret: str | None = None) -> object:
    return boto3.client(
        "s3",
        endpoint_url=services.s3_endpoint_url,
        aws_access_key_id=services.s3_access_key_id,
        aws_secret_access_key=secret or services.s3_secret_access_key,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", retries={"max_attempts": 1}),
    )


def _s3_env(services: Endpoints) -> dict[str, str]:
    assert services.s3_endpoint_url and services.s3_access_key_id
    assert services.s3_secret_access_key
    return {
        "S3_ENDPOINT_URL": services.s3_endpoint_url,
        "S3_ACCESS_KEY_ID": services.s3_access_key_id,
        "S3_SECRET_ACCESS_KEY": services.s3_secret_access_key,
        "S3_REGION": "us-east-1",
    }


@pytest.fixture(params=["local", "s3"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, unique_name: Callable[[str], str]
) -> Iterator[Backend]:
    if request.param == "local":
        root = tmp_path / "blobs"

        def plant_file(key: str, data: bytes) -> None:
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

        def local_keys() -> set[str]:
            base = root / "sha256"
            return {f"sha256/{p.name}" for p in base.iterdir()} if base.exists() else set()

        yield Backend("local", root.as_uri(), {}, plant_file, local_keys)
        return

    services: Endpoints = request.getfixturevalue("services")
    raw = _raw_s3(services)
    bucket = unique_name("blobs")

    def plant_object(key: str, data: bytes) -> None:
        raw.put_object(Bucket=bucket, Key=key, Body=data)  # type: ignore[attr-defined]

    def s3_keys() -> set[str]:
        listed = raw.list_objects_v2(Bucket=bucket)  # type: ignore[attr-defined]
        return {obj["Key"] for obj in listed.get("Contents", [])}

    yield Backend("s3", f"s3://{bucket}", _s3_env(services), plant_object, s3_keys)
    try:
        for key in s3_keys():
            raw.delete_object(Bucket=bucket, Key=key)  # type: ignore[attr-defined]
        raw.delete_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    except raw.exceptions.NoSuchBucket:  # type: ignore[attr-defined]
        pass  # a test that never started a store never created the bucket


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[BlobStore]:
    async with backend.open() as opened:
        yield opened


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _listed(store: BlobStore) -> list[str]:
    return [digest async for digest in store.list()]


# --- the contract -----------------------------------------------------------


async def test_roundtrip(store: BlobStore) -> None:
    data = os.urandom(300_000)
    ref = await store.put(data)
    assert ref.sha256 == _sha(data)
    assert ref.size == len(data)
    assert ref.key == f"sha256/{ref.sha256}"
    assert await store.exists(ref.sha256)
    assert await store.get(ref.sha256) == data


async def test_empty_blob_roundtrip(store: BlobStore) -> None:
    ref = await store.put(b"")
    assert ref.sha256 == _sha(b"") and ref.size == 0
    assert await store.get(ref.sha256) == b""


async def test_put_is_idempotent_and_durable(store: BlobStore, backend: Backend) -> None:
    data = b"export default { fetch() { return new Response('hi') } }"
    first = await store.put(data)
    second = await store.put(data)
    assert first == second
    assert await _listed(store) == [first.sha256]
    assert backend.raw_keys() == {first.key}
    async with backend.open() as reopened:  # another instance sees the same blob
        assert await reopened.get(first.sha256) == data
        assert await reopened.put(data) == first


async def test_put_checks_expected_digest_and_size(store: BlobStore) -> None:
    data = b"module bytes"
    other = _sha(b"something else")
    with pytest.raises(DigestMismatch):
        await store.put(data, expected_sha256=other)
    with pytest.raises(DigestMismatch):
        await store.put(data, expected_size=len(data) + 1)
    assert not await store.exists(_sha(data))
    assert await _listed(store) == []
    ref = await store.put(data, expected_sha256=_sha(data), expected_size=len(data))
    assert ref.sha256 == _sha(data)


async def test_get_detects_corruption_behind_the_stores_back(
    store: BlobStore, backend: Backend
) -> None:
    data = b"the real bundle " * 64
    ref = await store.put(data)
    tampered = bytearray(data)
    tampered[10] ^= 0x01
    backend.plant(ref.key, bytes(tampered))
    with pytest.raises(BlobCorrupt) as err:
        await store.get(ref.sha256)
    assert err.value.code == "blob_corrupt"
    assert err.value.sha256 == ref.sha256
    assert err.value.actual_sha256 == _sha(bytes(tampered))
    # Putting the genuine bytes again repairs the damaged copy.
    assert await store.put(data) == ref
    assert await store.get(ref.sha256) == data


async def test_truncated_object_is_corrupt(store: BlobStore, backend: Backend) -> None:
    data = os.urandom(4096)
    ref = await store.put(data)
    backend.plant(ref.key, data[:100])
    with pytest.raises(BlobCorrupt):
        await store.get(ref.sha256)


async def test_not_found(store: BlobStore) -> None:
    missing = _sha(b"never stored")
    with pytest.raises(BlobNotFound) as err:
        await store.get(missing)
    assert err.value.code == "blob_not_found"
    assert missing in str(err.value)
    assert not await store.exists(missing)


async def test_malformed_digests_are_refused(store: BlobStore) -> None:
    for bad in ["", "abc", "A" * 64, "g" * 64, "../" + "a" * 61, _sha(b"x") + "0"]:
        with pytest.raises(InvalidDigest):
            await store.get(bad)
        with pytest.raises(InvalidDigest):
            await store.exists(bad)
        with pytest.raises(InvalidDigest):
            await store.delete(bad)


async def test_delete_is_idempotent(store: BlobStore) -> None:
    keep = await store.put(b"keep me")
    gone = await store.put(b"delete me")
    await store.delete(gone.sha256)
    assert not await store.exists(gone.sha256)
    with pytest.raises(BlobNotFound):
        await store.get(gone.sha256)
    await store.delete(gone.sha256)  # again: no error
    await store.delete(_sha(b"never stored"))
    assert await store.get(keep.sha256) == b"keep me"
    assert await _listed(store) == [keep.sha256]


async def test_list_returns_every_digest_and_skips_foreign_keys(
    store: BlobStore, backend: Backend
) -> None:
    assert await _listed(store) == []
    refs = [await store.put(f"blob {i}".encode()) for i in range(25)]
    backend.plant("sha256/not-a-digest", b"junk")
    backend.plant("sha256/" + "A" * 64, b"junk")
    listed = await _listed(store)
    assert sorted(listed) == sorted(ref.sha256 for ref in refs)


async def test_put_stream(store: BlobStore) -> None:
    chunks = [os.urandom(1000) for _ in range(7)]

    async def produce() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    data = b"".join(chunks)
    ref = await store.put_stream(produce(), max_size=len(data), expected_sha256=_sha(data))
    assert ref.sha256 == _sha(data)
    assert await store.get(ref.sha256) == data
    with pytest.raises(BlobTooLarge):
        await store.put_stream(produce(), max_size=len(data) - 1)
    with pytest.raises(DigestMismatch):
        await store.put_stream(produce(), max_size=len(data), expected_sha256=_sha(b"x"))


async def test_lifecycle(backend: Backend) -> None:
    fresh = backend.open()
    assert not fresh.started
    with pytest.raises(BlobStoreNotStarted):
        await fresh.put(b"too early")
    await fresh.start()
    await fresh.start()  # idempotent
    ref = await fresh.put(b"now")
    await fresh.stop()
    await fresh.stop()  # idempotent
    with pytest.raises(BlobStoreNotStarted):
        await fresh.get(ref.sha256)
    async with fresh:
        assert await fresh.get(ref.sha256) == b"now"


# --- adapter-specific ---------------------------------------------------------


async def test_local_writes_leave_no_temp_files(tmp_path: Path) -> None:
    async with LocalBlobStore(tmp_path / "b") as local:
        for i in range(5):
            await local.put(f"x{i}".encode())
            await local.put(f"x{i}".encode())
    assert list((tmp_path / "b" / "tmp").iterdir()) == []
    assert len(list((tmp_path / "b" / "sha256").iterdir())) == 5
    assert LocalBlobStore(tmp_path / "b").path_of(_sha(b"x0")) == tmp_path / "b" / blob_key(
        _sha(b"x0")
    )


async def test_s3_creates_its_bucket(
    services: Endpoints, unique_name: Callable[[str], str]
) -> None:
    bucket = unique_name("created")
    raw = _raw_s3(services)
    async with open_blob_store(f"s3://{bucket}", environ=_s3_env(services)) as s3:
        ref = await s3.put(b"in a new bucket")
    try:
        assert raw.head_bucket(Bucket=bucket)  # type: ignore[attr-defined]
        async with open_blob_store(f"s3://{bucket}", environ=_s3_env(services)) as again:
            assert await again.get(ref.sha256) == b"in a new bucket"
    finally:
        raw.delete_object(Bucket=bucket, Key=ref.key)  # type: ignore[attr-defined]
        raw.delete_bucket(Bucket=bucket)  # type: ignore[attr-defined]


async def test_s3_wrong_credentials_are_refused(
    services: Endpoints, unique_name: Callable[[str], str]
) -> None:
    bucket = unique_name("guarded")
    good = S3Settings.from_env(bucket, _s3_env(services))
    async with S3BlobStore(good) as s3:
        ref = await s3.put(b"guarded")
    wrong_secret = "wrong-" + os.urandom(12).hex()
    assert services.s3_secret_access_key is not None
    try:
        for settings in (
            replace(good, secret_access_key=wrong_secret, max_attempts=1),
            replace(good, access_key_id="no-such-user", secret_access_key=wrong_secret),
        ):
            store = S3BlobStore(settings)
            with pytest.raises(BlobStoreUnavailable) as err:
                await store.start()
            text = str(err.value) + repr(err.value) + repr(store) + repr(settings)
            assert wrong_secret not in text
            assert services.s3_secret_access_key not in text
            assert err.value.__cause__ is None and err.value.__suppress_context__
            assert err.value.code == "blob_store_unavailable"
            assert "credentials" in str(err.value)
            assert not store.started
        # The blob is untouched and still readable with the right credentials.
        async with S3BlobStore(good) as s3:
            assert await s3.get(ref.sha256) == b"guarded"
    finally:
        raw = _raw_s3(services)
        raw.delete_object(Bucket=bucket, Key=ref.key)  # type: ignore[attr-defined]
        raw.delete_bucket(Bucket=bucket)  # type: ignore[attr-defined]


async def test_s3_list_pages_through_the_bucket(
    services: Endpoints, unique_name: Callable[[str], str]
) -> None:
    bucket = unique_name("paged")
    settings = replace(S3Settings.from_env(bucket, _s3_env(services)), list_page_size=7)
    async with S3BlobStore(settings) as s3:
        refs = [await s3.put(f"paged {i}".encode()) for i in range(30)]
        try:
            assert sorted(await _listed(s3)) == sorted(ref.sha256 for ref in refs)
        finally:
            for ref in refs:
                await s3.delete(ref.sha256)
            assert await _listed(s3) == []
    _raw_s3(services).delete_bucket(Bucket=bucket)  # type: ignore[attr-defined]


async def test_s3_unreachable_endpoint(services: Endpoints) -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = S3Settings(
        bucket="unreachable",
        endpoint_url=f"http://127.0.0.1:{port}",
        access_key_id="id",
        secret_access_key="secret-" + os.urandom(8).hex(),
        connect_timeout=2,
        max_attempts=1,
    )
    with pytest.raises(BlobStoreUnavailable) as err:
        await S3BlobStore(settings).start()
    assert "unreachable" in str(err.value)
    assert settings.secret_access_key is not None
    assert settings.secret_access_key not in str(err.value)


def test_factory_urls(tmp_path: Path) -> None:
    local = open_blob_store(tmp_path.as_uri())
    assert isinstance(local, LocalBlobStore) and local.root == tmp_path
    s3 = open_blob_store(
        "s3://wdl-bundles",
        environ={
            "S3_ENDPOINT_URL": "http://127.0.0.1:1",
            "S3_ACCESS_KEY_ID": "id",
            "S3_SECRET_ACCESS_KEY": "do-not-print-me",
            "S3_REGION": "eu-west-1",
        },
    )
    assert isinstance(s3, S3BlobStore)
    assert s3.settings.region == "eu-west-1" and s3.settings.bucket == "wdl-bundles"
    assert "do-not-print-me" not in repr(s3) + repr(s3.settings)
    for bad in [
        "s3://",
        "s3://Bad_Bucket",
        "s3://bucket/prefix",
        "file://host/path",
        "http://x",
        "/plain/path",
    ]:
        with pytest.raises(BlobStoreConfigError):
            open_blob_store(bad, environ={})
    with pytest.raises(BlobStoreConfigError):
        open_blob_store("s3://bucket", environ={"S3_ACCESS_KEY_ID": "only-the-id"})
