"""One contract for every R2Store adapter: local directory and S3 (real versitygw).

Each test gets a fresh directory or a fresh S3 bucket. Semantics follow
Miniflare's R2 implementation (limits, conditions, ranges, list pages,
multipart part rules); nothing is mocked.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from harness.endpoints import Endpoints
from services.r2 import Conditional, ListOptions, R2Store, RangeSpec, Where
from services.r2.errors import (
    BadDigest,
    BadUpload,
    EntityTooSmall,
    InternalError,
    InvalidMaxKeys,
    InvalidObjectName,
    InvalidPart,
    InvalidRange,
    MetadataTooLarge,
    NoSuchKey,
    NoSuchUpload,
    PreconditionFailed,
)
from services.r2.keys import decode_key, encode_key
from services.r2.model import Etag
from tests.integration.r2_rig import opened_store

pytestmark = pytest.mark.integration

A = Where("ns-a", "bucket-1")
B = Where("ns-b", "bucket-1")
MiB = 1024 * 1024


async def body(*chunks: bytes) -> AsyncIterator[bytes]:
    for c in chunks:
        yield c


async def read_all(store: R2Store, where: Where, key: str, **kw: object) -> bytes:
    got = await store.get(where, key, **kw)  # type: ignore[arg-type]
    return b"".join([c async for c in got.chunks])


class StoreContract:
    kind: str

    @pytest.fixture
    async def store(self, tmp_path: Path, request: pytest.FixtureRequest,
                    unique_name: Callable[[str], str]) -> AsyncIterator[R2Store]:
        def services() -> Endpoints:
            return request.getfixturevalue("services")  # type: ignore[no-any-return]

        async with opened_store(self.kind, tmp_path, services, unique_name("r2c")) as store:
            yield store

    async def test_put_get_head_round_trip(self, store: R2Store) -> None:
        data = b"hello r2"
        meta = await store.put(A, "greeting.txt", body(b"hello", b" r2"),
                               http_metadata={"contentType": "text/plain"},
                               custom_metadata={"owner": "ana"})
        assert meta.size == len(data)
        assert meta.etag == hashlib.md5(data).hexdigest()
        assert meta.checksums == {"md5": meta.etag}
        head = await store.head(A, "greeting.txt")
        assert head is not None and head.version == meta.version
        assert head.http_metadata == {"contentType": "text/plain"}
        assert head.custom_metadata == {"owner": "ana"}
        assert await read_all(store, A, "greeting.txt") == data

    async def test_missing_objects(self, store: R2Store) -> None:
        assert await store.head(A, "nope") is None
        with pytest.raises(NoSuchKey):
            await store.get(A, "nope")

    async def test_overwrite_replaces_version(self, store: R2Store) -> None:
        first = await store.put(A, "k", body(b"one"))
        second = await store.put(A, "k", body(b"two"))
        assert first.version != second.version
        assert await read_all(store, A, "k") == b"two"

    async def test_ranges(self, store: R2Store) -> None:
        await store.put(A, "r", body(b"0123456789"))
        assert await read_all(store, A, "r", range_=RangeSpec(offset=2, length=3)) == b"234"
        assert await read_all(store, A, "r", range_=RangeSpec(offset=7)) == b"789"
        assert await read_all(store, A, "r", range_=RangeSpec(suffix=4)) == b"6789"
        assert await read_all(store, A, "r", range_=RangeSpec(header="bytes=1-2")) == b"12"
        assert await read_all(store, A, "r", range_=RangeSpec(offset=8, length=100)) == b"89"
        got = await store.get(A, "r", range_=RangeSpec(offset=4, length=2))
        assert (got.offset, got.length) == (4, 2)
        with pytest.raises(InvalidRange):
            await store.get(A, "r", range_=RangeSpec(offset=11))
        with pytest.raises(InvalidRange):
            await store.get(A, "r", range_=RangeSpec(suffix=0))

    async def test_conditional_get_and_put(self, store: R2Store) -> None:
        meta = await store.put(A, "c", body(b"v1"))
        ok = Conditional(etag_matches=(Etag("strong", meta.etag),))
        assert await read_all(store, A, "c", only_if=ok) == b"v1"
        bad = Conditional(etag_matches=(Etag("strong", "0" * 32),))
        with pytest.raises(PreconditionFailed) as failed:
            await store.get(A, "c", only_if=bad)
        assert failed.value.meta is not None and failed.value.meta.etag == meta.etag
        with pytest.raises(PreconditionFailed):
            await store.put(A, "c", body(b"v2"), only_if=bad)
        assert await read_all(store, A, "c") == b"v1"
        later = Conditional(uploaded_before=meta.uploaded + 60_000)
        await store.put(A, "c", body(b"v3"), only_if=later)
        assert await read_all(store, A, "c") == b"v3"
        # If-None-Match: * on a missing key creates; on an existing one refuses.
        create_only = Conditional(etag_does_not_match=(Etag("wildcard"),))
        await store.put(A, "fresh", body(b"x"), only_if=create_only)
        with pytest.raises(PreconditionFailed):
            await store.put(A, "fresh", body(b"y"), only_if=create_only)

    async def test_checksums(self, store: R2Store) -> None:
        data = b"checked"
        sha256 = hashlib.sha256(data).digest()
        meta = await store.put(A, "sum", body(data), expected={"sha256": sha256,
                                                                "md5": hashlib.md5(data).digest()})
        assert meta.checksums["sha256"] == sha256.hex()
        with pytest.raises(BadDigest, match="SHA-256 checksum you specified did not match"):
            await store.put(A, "sum", body(b"other"), expected={"sha256": sha256})
        assert await read_all(store, A, "sum") == data

    async def test_limits(self, store: R2Store) -> None:
        with pytest.raises(InvalidObjectName):
            await store.put(A, "k" * 1025, body(b""))
        await store.put(A, "é" * 512, body(b"max"))  # 1024 bytes: allowed
        assert await read_all(store, A, "é" * 512) == b"max"
        with pytest.raises(MetadataTooLarge):
            await store.put(A, "m", body(b""), custom_metadata={"k": "v" * 2048})
        with pytest.raises(InvalidMaxKeys):
            await store.list_objects(A, ListOptions(limit=1001))

    async def test_list_order_prefix_delimiter_and_pages(self, store: R2Store) -> None:
        keys = ["a", "a/b", "a/c/d", "a\x00", "b", "é", "a/b/../../x", "ab"]
        for k in keys:
            await store.put(A, k, body(k.encode()), custom_metadata={"k": "1"})
        page = await store.list_objects(A, ListOptions())
        assert [o.key for o in page.objects] == sorted(keys, key=lambda k: k.encode())
        assert page.next_start_after is None
        assert page.objects[0].custom_metadata == {}
        page = await store.list_objects(A, ListOptions(prefix="a/", delimiter="/"))
        assert [o.key for o in page.objects] == ["a/b"]
        assert page.delimited_prefixes == ["a/b/", "a/c/"]
        page = await store.list_objects(A, ListOptions(include=frozenset({"customMetadata"}),
                                                       prefix="b"))
        assert [(o.key, o.custom_metadata) for o in page.objects] == [("b", {"k": "1"})]
        seen: list[str] = []
        after: str | None = None
        while True:
            page = await store.list_objects(A, ListOptions(limit=3, start_after=after))
            seen += [o.key for o in page.objects]
            if page.next_start_after is None:
                break
            after = page.next_start_after
        assert seen == sorted(keys, key=lambda k: k.encode())

    async def test_large_metadata_round_trips(self, store: R2Store) -> None:
        custom = {"a": "x" * 1000, "b": "y" * 1000}  # 2 KiB: R2's cap, past S3's inline cap
        for n in range(2):
            meta = await store.put(A, "meta", body(b"v%d" % n), custom_metadata=custom,
                                   http_metadata={"contentType": "t/" + "z" * 300})
            head = await store.head(A, "meta")
            assert head is not None and head.custom_metadata == custom
            assert head.version == meta.version
        listed = await store.list_objects(A, ListOptions(include=frozenset({"customMetadata"})))
        assert listed.objects[0].custom_metadata == custom
        await store.delete(A, ["meta"])
        assert await store.head(A, "meta") is None

    async def test_delete_bulk(self, store: R2Store) -> None:
        for k in ("x1", "x2", "x3"):
            await store.put(A, k, body(b"."))
        await store.delete(A, ["x1", "x3", "never-existed"])
        assert [o.key for o in (await store.list_objects(A, ListOptions())).objects] == ["x2"]

    async def test_large_body_streams_through_staging(self, store: R2Store) -> None:
        chunk = os.urandom(MiB)
        chunks = [chunk] * 20
        meta = await store.put(A, "big", body(*chunks), expected={"sha1": hashlib.sha1(
            b"".join(chunks)).digest()})
        assert meta.size == 20 * MiB
        got = await store.get(A, "big", range_=RangeSpec(offset=19 * MiB - 3, length=6))
        assert b"".join([c async for c in got.chunks]) == (chunk[-3:] + chunk[:3])
        h = hashlib.md5()
        async for c in (await store.get(A, "big")).chunks:
            h.update(c)
        assert h.hexdigest() == meta.etag

    async def test_multipart(self, store: R2Store) -> None:
        upload_id = await store.create_multipart(A, "mp", http_metadata={"contentType": "a/b"},
                                                 custom_metadata={"m": "1"})
        p1, p2 = os.urandom(5 * MiB), os.urandom(MiB)
        e1 = await store.upload_part(A, "mp", upload_id, 1, body(p1))
        e2 = await store.upload_part(A, "mp", upload_id, 2, body(p2))
        with pytest.raises(InvalidPart):
            await store.complete_multipart(A, "mp", upload_id, [(1, e1), (2, "wrong")])
        meta = await store.complete_multipart(A, "mp", upload_id, [(1, e1), (2, e2)])
        md5s = hashlib.md5(p1).digest() + hashlib.md5(p2).digest()
        assert meta.etag == f"{hashlib.md5(md5s).hexdigest()}-2"
        assert meta.size == 6 * MiB
        head = await store.head(A, "mp")
        assert head is not None and head.custom_metadata == {"m": "1"}
        assert head.http_metadata == {"contentType": "a/b"}
        assert await read_all(store, A, "mp") == p1 + p2
        with pytest.raises(NoSuchUpload):
            await store.upload_part(A, "mp", upload_id, 3, body(b"late"))

    async def test_multipart_part_rules_and_abort(self, store: R2Store) -> None:
        upload_id = await store.create_multipart(A, "rules")
        small = await store.upload_part(A, "rules", upload_id, 1, body(b"tiny"))
        last = await store.upload_part(A, "rules", upload_id, 2, body(b"end"))
        with pytest.raises(EntityTooSmall):
            await store.complete_multipart(A, "rules", upload_id, [(1, small), (2, last)])
        with pytest.raises(NoSuchUpload):
            await store.upload_part(A, "other-key", upload_id, 1, body(b"x"))
        await store.abort_multipart(A, "rules", upload_id)
        with pytest.raises(NoSuchUpload):
            await store.complete_multipart(A, "rules", upload_id, [(1, small)])
        await store.abort_multipart(A, "rules", upload_id)  # aborting twice: no-op
        assert await store.head(A, "rules") is None
        with pytest.raises(InternalError):  # never existed (Miniflare's answer)
            await store.abort_multipart(A, "rules", "bm9wZQ")
        with pytest.raises(InternalError):
            await store.complete_multipart(A, "rules", "../../x", [])

        upload_id = await store.create_multipart(A, "uneven")
        big = await store.upload_part(A, "uneven", upload_id, 1, body(b"a" * 5 * MiB))
        bigger = await store.upload_part(A, "uneven", upload_id, 2, body(b"b" * (6 * MiB)))
        with pytest.raises(BadUpload):
            await store.complete_multipart(A, "uneven", upload_id, [(1, big), (2, bigger)])

    async def test_isolation(self, store: R2Store) -> None:
        await store.put(A, "../ns-b/bucket-1/secret", body(b"a's"))
        await store.put(B, "secret", body(b"b's"))
        await store.put(Where("ns-a", "bucket-2"), "secret", body(b"a2's"))
        assert await read_all(store, B, "secret") == b"b's"
        assert [o.key for o in (await store.list_objects(B, ListOptions())).objects] == ["secret"]
        assert [o.key for o in (await store.list_objects(A, ListOptions())).objects] == [
            "../ns-b/bucket-1/secret"]
        await store.drop_bucket(A)
        assert await store.is_empty(A)
        assert not await store.is_empty(B)
        assert await read_all(store, Where("ns-a", "bucket-2"), "secret") == b"a2's"


class TestLocalStore(StoreContract):
    kind = "local"

    async def test_files_stay_under_the_root(self, tmp_path: Path) -> None:
        async with opened_store("local", tmp_path, lambda: None, "") as store:  # type: ignore[arg-type,return-value]
            await store.put(A, "../../../escape", body(b"x"))
            await store.put(A, "/abs/path", body(b"y"))
        root = (tmp_path / "r2").resolve()
        files = _files(tmp_path)
        assert files and all(root in p.parents for p in files)
        assert not any(".." in p.name or p.name == "escape" for p in files)


def _files(top: Path) -> list[Path]:
    return [p.resolve() for p in top.rglob("*") if p.is_file()]


class TestS3Store(StoreContract):
    kind = "s3"


def test_key_encoding_preserves_order_and_round_trips() -> None:
    keys = ["", "a", "a\x00", "a/", "a/b", "ab", "b", "é", "\U0001f600", "x" * 150, "x" * 151,
            "y" * 600, "y" * 601, "../..", "%2e"]
    for k in keys:
        assert decode_key(encode_key(k)) == k
        assert all(len(seg) <= 201 for seg in encode_key(k).split("/"))
    by_bytes = sorted(keys, key=lambda k: k.encode())
    assert sorted(keys, key=encode_key) == by_bytes
