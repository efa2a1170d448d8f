"""S3R2Store: every tenant bucket under one S3 bucket (boto3, SigV4).

Layout per tenant bucket, prefix `r2/<ns token>/<bucket token>/`:

- `o/<encoded key>`  the object; its R2 metadata is one user-metadata field
  `wdl` (base64url JSON: version, etag, uploaded, http/custom metadata,
  checksums), so metadata and bytes change in one atomic S3 write; metadata
  too big for S3's 2 KB cap goes to an immutable sidecar `x/<version>` that
  is written first and named by the object's `wdl-x` field;
- `s/<id>`           a large body being streamed in (S3 multipart, 8 MiB parts);
- `u/<upload id>/`   an R2 multipart upload: `upload` (JSON, kept with its state
  after completion or abort, as Miniflare keeps it) and one object per part
  `p<n>`, assembled on completion with server-side UploadPartCopy.

Bodies up to 8 MiB are buffered and written with one PutObject. Larger ones
stream to `s/` (memory: one 8 MiB part), are checked (checksums, condition)
and copied server-side onto `o/...` with the metadata, so a failed checksum
or condition never touches the visible object.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from services.blobstore.s3_settings import S3Settings, make_s3_client
from services.r2.errors import NoSuchUpload, R2StoreError
from services.r2.keys import decode_key, encode_key, listing_prefix, name_token
from services.r2.model import Digests, ObjectMeta, PartInfo, Where
from services.r2.port import (
    ABORTED,
    COMPLETED,
    IN_PROGRESS,
    Body,
    R2Store,
    Upload,
    multipart_meta,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")
PART = 8 * 1024 * 1024
READ_CHUNK = 256 * 1024
INLINE_META = 1800  # bytes of base64: below S3's 2 KB user-metadata cap with room to spare
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_NO_BUCKET = frozenset({"404", "NoSuchBucket", "NotFound"})


@dataclass(frozen=True)
class _Staged:
    data: bytes | None = None  # small body, in memory
    key: str | None = None  # large body, at this S3 key


class S3R2Store(R2Store):
    def __init__(self, settings: S3Settings) -> None:
        super().__init__()
        self.settings = settings
        self._client: S3Client | None = None

    def __repr__(self) -> str:
        return f"S3R2Store({self.settings.where})"

    # --- lifecycle --------------------------------------------------------

    async def _open(self) -> None:
        client = await asyncio.to_thread(self._make_client)
        try:
            await self._call("open", lambda: self._ensure_bucket(client))
        except BaseException:
            await asyncio.to_thread(client.close)
            raise
        self._client = client

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)

    def _make_client(self) -> S3Client:
        client: S3Client = make_s3_client(self.settings, max_pool_connections=32)
        return client

    def _ensure_bucket(self, client: S3Client) -> None:
        try:
            client.head_bucket(Bucket=self.settings.bucket)
            return
        except ClientError as exc:
            if _code(exc) not in _NO_BUCKET:
                raise
        try:
            client.create_bucket(Bucket=self.settings.bucket)
        except ClientError as exc:
            if _code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise

    @property
    def _c(self) -> S3Client:
        if self._client is None:
            raise R2StoreError(f"{self!r} is not started")
        return self._client

    def _base(self, where: Where) -> str:
        return f"r2/{name_token(where.namespace)}/{name_token(where.bucket)}/"

    def _okey(self, where: Where, key: str) -> str:
        return self._base(where) + "o/" + encode_key(key)

    # --- objects ------------------------------------------------------------

    async def _head(self, where: Where, key: str) -> ObjectMeta | None:
        okey = self._okey(where, key)

        def head() -> dict[str, str] | None:
            try:
                r = self._c.head_object(Bucket=self.settings.bucket, Key=okey)
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    return None
                raise
            return r.get("Metadata", {})

        found = await self._call(f"head {okey}", head)
        return None if found is None else await self._meta_of(where, key, found)

    async def _read(self, where: Where, meta: ObjectMeta, offset: int,
                    length: int) -> Body | None:
        okey = self._okey(where, meta.key)

        def open_() -> Any:
            extra: dict[str, Any] = {}
            if length > 0:
                extra["Range"] = f"bytes={offset}-{offset + length - 1}"
            try:
                r = self._c.get_object(Bucket=self.settings.bucket, Key=okey, **extra)
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    return None
                raise
            if _version_of(r.get("Metadata", {})) != meta.version:
                r["Body"].close()
                return None
            return r["Body"]

        stream = await self._call(f"get {okey}", open_)
        if stream is None:
            return None
        return self._chunks(stream, length)

    async def _chunks(self, stream: Any, length: int) -> Body:
        it: Iterator[bytes] = stream.iter_chunks(READ_CHUNK)
        try:
            sent = 0
            while sent < length:
                chunk = await self._call("read", lambda: next(it, b""))
                if not chunk:
                    break
                sent += len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(stream.close)

    async def _stage(self, where: Where, body: Body) -> _Staged:
        buf = bytearray()
        it = body.__aiter__()
        async for chunk in it:
            buf += chunk
            if len(buf) >= PART:
                break
        else:
            return _Staged(data=bytes(buf))
        key = self._base(where) + "s/" + secrets.token_hex(16)
        await self._stream_to(key, buf, it)
        return _Staged(key=key)

    async def _stream_to(self, key: str, first: bytearray, rest: AsyncIterator[bytes]) -> None:
        bucket = self.settings.bucket
        created = await self._call(
            "create multipart", lambda: self._c.create_multipart_upload(Bucket=bucket, Key=key))
        upload_id = created["UploadId"]
        parts: list[dict[str, Any]] = []

        async def send(data: bytes) -> None:
            n = len(parts) + 1
            r = await self._call(f"upload part {n}", lambda: self._c.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=data))
            parts.append({"PartNumber": n, "ETag": r["ETag"]})

        try:
            buf = first
            while len(buf) >= PART:
                await send(bytes(buf[:PART]))
                del buf[:PART]
            async for chunk in rest:
                buf += chunk
                while len(buf) >= PART:
                    await send(bytes(buf[:PART]))
                    del buf[:PART]
            if buf or not parts:
                await send(bytes(buf))
            await self._call("complete multipart", lambda: self._c.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}))  # type: ignore[typeddict-item]
        except BaseException:
            await self._call("abort multipart", lambda: self._c.abort_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id))
            raise

    async def _place(self, staged: _Staged, key: str, metadata: dict[str, str]) -> None:
        bucket = self.settings.bucket
        if staged.data is not None:
            data = staged.data
            await self._call(f"put {key}", lambda: self._c.put_object(
                Bucket=bucket, Key=key, Body=data, Metadata=metadata))
            return
        assert staged.key is not None
        src = staged.key
        await self._call(f"copy {key}", lambda: self._c.copy_object(
            Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": src},
            Metadata=metadata, MetadataDirective="REPLACE"))
        await self._delete_keys([src])

    async def _commit(self, where: Where, staged: _Staged, meta: ObjectMeta) -> None:
        headers = await self._meta_headers(where, meta)
        old = await self._head(where, meta.key)
        await self._place(staged, self._okey(where, meta.key), headers)
        if old is not None:
            await self._drop_sidecar(where, old)

    async def _meta_headers(self, where: Where, meta: ObjectMeta) -> dict[str, str]:
        """User metadata for the object: the R2 metadata inline, or (when it would pass
        S3's 2 KB user-metadata cap) a pointer to an immutable sidecar `x/<version>`
        written first, so the object write stays the one commit point."""
        record = meta.to_json()
        del record["key"]  # the S3 key already says it
        inline = _encode(record)
        if len(inline) <= INLINE_META:
            return {"wdl": inline}
        sidecar = self._base(where) + "x/" + meta.version
        blob = json.dumps(record).encode()
        await self._call("put metadata", lambda: self._c.put_object(
            Bucket=self.settings.bucket, Key=sidecar, Body=blob))
        return {"wdl-x": meta.version}

    async def _meta_of(self, where: Where, key: str, md: dict[str, str]) -> ObjectMeta | None:
        if "wdl" in md:
            return ObjectMeta.from_json({**_decode(md["wdl"]), "key": key})
        version = md.get("wdl-x")
        if version is None or not version.isalnum():
            return None
        sidecar = self._base(where) + "x/" + version

        def load() -> Any:
            try:
                r = self._c.get_object(Bucket=self.settings.bucket, Key=sidecar)
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    return None
                raise
            with r["Body"] as b:
                return json.loads(b.read())

        record = await self._call("read metadata", load)
        return None if record is None else ObjectMeta.from_json({**record, "key": key})

    async def _drop_sidecar(self, where: Where, old: ObjectMeta) -> None:
        await self._delete_keys([self._base(where) + "x/" + old.version])

    async def _discard(self, where: Where, staged: _Staged) -> None:
        if staged.key is not None:
            await self._delete_keys([staged.key])

    async def _delete(self, where: Where, keys: list[str]) -> None:
        olds = await asyncio.gather(*(self._head(where, k) for k in keys))
        await self._delete_keys([self._okey(where, k) for k in keys])
        sidecars = [self._base(where) + "x/" + o.version for o in olds if o is not None]
        await self._delete_keys(sidecars)

    async def _delete_keys(self, keys: list[str]) -> None:
        bucket = self.settings.bucket
        for i in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[i:i + 1000]]
            await self._call("delete", lambda b=batch: self._c.delete_objects(  # type: ignore[misc]
                Bucket=bucket, Delete={"Objects": b, "Quiet": True}))

    async def _raw_keys(self, prefix: str, start_after: str | None = None) -> AsyncIterator[str]:
        bucket = self.settings.bucket
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix,
                                    "MaxKeys": self.settings.list_page_size}
            if token is not None:
                args["ContinuationToken"] = token
            elif start_after is not None:
                args["StartAfter"] = start_after
            r = await self._call("list", lambda a=args: self._c.list_objects_v2(**a))  # type: ignore[misc]
            for obj in r.get("Contents", []):
                yield obj["Key"]
            if not r.get("IsTruncated"):
                return
            token = r.get("NextContinuationToken")

    async def _keys(self, where: Where, prefix: str,
                    start_after: str | None) -> AsyncIterator[str]:
        base = self._base(where) + "o/"
        after = None if start_after is None else base + encode_key(start_after)
        async for name in self._raw_keys(base + listing_prefix(prefix), after):
            key = decode_key(name[len(base):])
            if key is not None:
                yield key

    # --- multipart ----------------------------------------------------------

    def _ukey(self, where: Where, upload_id: str, leaf: str) -> str:
        if not _valid_upload_id(upload_id):
            raise NoSuchUpload()
        return f"{self._base(where)}u/{upload_id}/{leaf}"

    async def _write_upload(self, where: Where, upload_id: str, upload: Upload) -> None:
        record = json.dumps(upload.to_json()).encode()
        key = self._ukey(where, upload_id, "upload")
        await self._call("write upload", lambda: self._c.put_object(
            Bucket=self.settings.bucket, Key=key, Body=record))

    async def _mp_create(self, where: Where, upload: Upload) -> str:
        upload_id = secrets.token_urlsafe(32)
        await self._write_upload(where, upload_id, upload)
        return upload_id

    async def _mp_upload(self, where: Where, key: str, upload_id: str) -> Upload | None:
        upload = await self._load_upload(where, upload_id)
        return upload if upload is not None and upload.key == key else None

    async def _load_upload(self, where: Where, upload_id: str) -> Upload | None:
        if not _valid_upload_id(upload_id):
            return None
        ukey = self._ukey(where, upload_id, "upload")

        def load() -> Any:
            try:
                r = self._c.get_object(Bucket=self.settings.bucket, Key=ukey)
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    return None
                raise
            with r["Body"] as b:
                return json.loads(b.read())

        record = await self._call("read upload", load)
        return None if record is None else Upload.from_json(record)

    async def _mp_part(self, where: Where, upload_id: str, part_number: int, body: Body,
                       digests: Digests) -> str:
        staged = await self._stage(where, body)
        info = PartInfo(part_number, digests.md5_hex, digests.size, digests.md5_hex)
        part_key = self._ukey(where, upload_id, f"p{part_number}")
        try:
            await self._place(staged, part_key, {"wdl-part": _encode(info.__dict__)})
        except BaseException:
            await self._discard(where, staged)
            raise
        # Completed or aborted while this part streamed in: its parts are already swept,
        # so this one must not linger either.
        upload = await self._load_upload(where, upload_id)
        if upload is None or upload.state != IN_PROGRESS:
            await self._delete_keys([part_key])
            raise NoSuchUpload()
        return info.etag

    async def _mp_parts(self, where: Where, upload_id: str) -> dict[int, PartInfo]:
        prefix = self._ukey(where, upload_id, "p")
        names = [n async for n in self._raw_keys(prefix)]

        def head(name: str) -> PartInfo:
            r = self._c.head_object(Bucket=self.settings.bucket, Key=name)
            return PartInfo(**_decode(r["Metadata"]["wdl-part"]))

        infos = await asyncio.gather(*(self._call("head part", lambda n=n: head(n))  # type: ignore[misc]
                                       for n in names))
        return {i.part_number: i for i in infos}

    async def _mp_complete(self, where: Where, upload_id: str, upload: Upload,
                           parts: list[PartInfo]) -> ObjectMeta:
        meta = multipart_meta(upload, parts, [p.md5 for p in parts])
        bucket, okey = self.settings.bucket, self._okey(where, upload.key)
        headers = await self._meta_headers(where, meta)
        old = await self._head(where, upload.key)
        created = await self._call("create multipart", lambda: self._c.create_multipart_upload(
            Bucket=bucket, Key=okey, Metadata=headers))
        s3_upload = created["UploadId"]
        done: list[dict[str, Any]] = []
        try:
            for n, part in enumerate(parts, 1):
                src = self._ukey(where, upload_id, f"p{part.part_number}")
                r = await self._call("copy part", lambda n=n, src=src: self._c.upload_part_copy(  # type: ignore[misc]
                    Bucket=bucket, Key=okey, UploadId=s3_upload, PartNumber=n,
                    CopySource={"Bucket": bucket, "Key": src}))
                done.append({"PartNumber": n, "ETag": r["CopyPartResult"]["ETag"]})
            await self._call("complete", lambda: self._c.complete_multipart_upload(
                Bucket=bucket, Key=okey, UploadId=s3_upload, MultipartUpload={"Parts": done}))  # type: ignore[typeddict-item]
        except BaseException:
            await self._call("abort", lambda: self._c.abort_multipart_upload(
                Bucket=bucket, Key=okey, UploadId=s3_upload))
            raise
        await self._finish(where, upload_id, upload, COMPLETED)
        if old is not None:
            await self._drop_sidecar(where, old)
        return meta

    async def _mp_abort(self, where: Where, upload_id: str, upload: Upload) -> None:
        await self._finish(where, upload_id, upload, ABORTED)

    async def _finish(self, where: Where, upload_id: str, upload: Upload, state: int) -> None:
        await self._write_upload(where, upload_id, replace(upload, state=state))
        prefix = self._ukey(where, upload_id, "p")
        await self._delete_keys([n async for n in self._raw_keys(prefix)])

    async def _drop(self, where: Where) -> None:
        await self._delete_keys([n async for n in self._raw_keys(self._base(where))])

    # --- plumbing ---------------------------------------------------------

    async def _call(self, action: str, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except ClientError as exc:
            raise R2StoreError(
                f"S3 {self.settings.where} refused {action}: {_code(exc)}") from None
        except BotoCoreError as exc:
            raise R2StoreError(
                f"S3 {self.settings.where} is unreachable ({action}): {type(exc).__name__}"
            ) from exc


def _valid_upload_id(upload_id: str) -> bool:
    return 0 < len(upload_id) <= 128 and all(c.isalnum() or c in "-_" for c in upload_id)


def _encode(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()


def _decode(text: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(text.encode()))


def _version_of(metadata: dict[str, str]) -> str | None:
    if "wdl" in metadata:
        return str(_decode(metadata["wdl"])["version"])
    return metadata.get("wdl-x")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
