"""The R2Store port: a tenant bucket's objects, keyed by (namespace, bucket).

R2 semantics (limits, conditions, ranges, checksums, list pages, multipart
rules) live here once; adapters implement raw steps over their medium:
staging a streamed body, committing it under a key, reading a version,
listing stored keys in order, and multipart parts.
"""

from __future__ import annotations

import abc
import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from services.r2.errors import (
    BadUpload,
    EntityTooLarge,
    EntityTooSmall,
    InternalError,
    InvalidPart,
    NoSuchKey,
    NoSuchUpload,
    R2StoreNotStarted,
)
from services.r2.keys import select
from services.r2.model import (
    MAX_LIST_WITH_METADATA,
    MAX_VALUE_SIZE,
    MIN_PART_SIZE,
    Conditional,
    Digests,
    ListOptions,
    ListPage,
    ObjectMeta,
    PartInfo,
    RangeSpec,
    Where,
    check_custom_metadata,
    check_key,
    check_limit,
    new_version,
)

Body = AsyncIterator[bytes]
# Upload states, as Miniflare keeps them: a finished upload stays as a tombstone, so
# "finished" (NoSuchUpload) and "never existed" (InternalError) answer differently.
IN_PROGRESS, COMPLETED, ABORTED = 0, 1, 2
_HEAD_CONCURRENCY = 16


@dataclass(frozen=True)
class ObjectBody:
    meta: ObjectMeta
    offset: int
    length: int
    chunks: Body


@dataclass(frozen=True)
class Upload:
    """A multipart upload in progress: what `createMultipartUpload` was given."""

    key: str
    http_metadata: dict[str, Any]
    custom_metadata: dict[str, str]
    state: int = IN_PROGRESS

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "httpMetadata": self.http_metadata,
                "customMetadata": self.custom_metadata, "state": self.state}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Upload:
        return cls(str(data["key"]), dict(data.get("httpMetadata") or {}),
                   dict(data.get("customMetadata") or {}), int(data.get("state", IN_PROGRESS)))


class R2Store(abc.ABC):
    """Constructors do no I/O: `start()` connects / creates, `close()` releases."""

    min_part_size = MIN_PART_SIZE

    def __init__(self) -> None:
        self._started = False
        self._locks: weakref.WeakValueDictionary[tuple[Where, str], asyncio.Lock] = (
            weakref.WeakValueDictionary())

    async def start(self) -> None:
        if not self._started:
            await self._open()
            self._started = True

    async def close(self) -> None:
        if self._started:
            self._started = False
            await self._close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    def _require(self) -> None:
        if not self._started:
            raise R2StoreNotStarted(f"{self!r} is not started")

    def _lock(self, where: Where, key: str) -> asyncio.Lock:
        # Serialises check-and-commit of conditional writes within this process.
        lock = self._locks.get((where, key))
        if lock is None:
            lock = asyncio.Lock()
            self._locks[(where, key)] = lock
        return lock

    # --- objects ------------------------------------------------------------

    async def head(self, where: Where, key: str) -> ObjectMeta | None:
        self._require()
        meta = await self._head(where, check_key(key))
        return None if meta is None else meta.with_md5_checksum()

    async def get(self, where: Where, key: str, *, range_: RangeSpec | None = None,
                  only_if: Conditional | None = None) -> ObjectBody:
        """Raises NoSuchKey, PreconditionFailed (carrying the metadata), InvalidRange."""
        self._require()
        check_key(key)
        for _ in range(3):  # the object may be replaced between metadata and bytes
            meta = await self._head(where, key)
            if meta is None:
                raise NoSuchKey()
            meta = meta.with_md5_checksum()
            if only_if is not None:
                only_if.check(meta)
            span = range_.resolve(meta.size) if range_ is not None else None
            offset, length = span if span is not None else (0, meta.size)
            chunks = await self._read(where, meta, offset, length)
            if chunks is not None:
                return ObjectBody(meta, offset, length, chunks)
        raise NoSuchKey()

    async def put(self, where: Where, key: str, body: Body, *,
                  http_metadata: Mapping[str, Any] | None = None,
                  custom_metadata: Mapping[str, str] | None = None,
                  expected: Mapping[str, bytes] | None = None,
                  only_if: Conditional | None = None) -> ObjectMeta:
        """Streams `body` to staging, verifies its checksums, then (still holding the
        condition) replaces the object atomically. PreconditionFailed leaves it alone."""
        self._require()
        check_key(key)
        custom = dict(custom_metadata or {})
        check_custom_metadata(custom)
        digests = Digests(expected or {})
        staged = await self._stage(where, _counted(body, digests))
        try:
            if digests.size > MAX_VALUE_SIZE:
                raise EntityTooLarge()
            checksums = digests.verify()
            async with self._lock(where, key):
                if only_if is not None:
                    only_if.check(await self._head(where, key))
                meta = ObjectMeta(key, new_version(), digests.size, digests.md5_hex, _now_ms(),
                                  dict(http_metadata or {}), custom, checksums)
                await self._commit(where, staged, meta)
        except BaseException:
            await self._discard(where, staged)
            raise
        return meta.with_md5_checksum()

    async def delete(self, where: Where, keys: Sequence[str]) -> None:
        self._require()
        for key in keys:
            check_key(key)
        await self._delete(where, list(keys))

    async def list_objects(self, where: Where, options: ListOptions) -> ListPage:
        self._require()
        check_limit(options.limit)
        limit = options.limit
        if options.include:
            limit = min(limit, MAX_LIST_WITH_METADATA)
        start_after = options.start_after
        chosen = await select(self._keys(where, options.prefix, start_after), options.prefix,
                              options.delimiter or None, limit)
        gate = asyncio.Semaphore(_HEAD_CONCURRENCY)

        async def head(key: str) -> ObjectMeta | None:
            async with gate:
                return await self._head(where, key)

        metas = await asyncio.gather(*(head(k) for k in chosen.keys))
        objects = [m.with_md5_checksum().listed(options.include) for m in metas if m is not None]
        return ListPage(objects, chosen.prefixes, chosen.next_start_after)

    # --- multipart ----------------------------------------------------------

    async def create_multipart(self, where: Where, key: str, *,
                               http_metadata: Mapping[str, Any] | None = None,
                               custom_metadata: Mapping[str, str] | None = None) -> str:
        self._require()
        check_key(key)
        custom = dict(custom_metadata or {})
        check_custom_metadata(custom)
        return await self._mp_create(where, Upload(key, dict(http_metadata or {}), custom))

    async def upload_part(self, where: Where, key: str, upload_id: str, part_number: int,
                          body: Body) -> str:
        """Returns the part's etag."""
        self._require()
        check_key(key)
        upload = await self._mp_upload(where, key, upload_id)
        if upload is None or upload.state != IN_PROGRESS:  # before reading a byte
            raise NoSuchUpload()
        digests = Digests({})
        return await self._mp_part(where, upload_id, part_number, _counted(body, digests),
                                   digests)

    async def complete_multipart(self, where: Where, key: str, upload_id: str,
                                 parts: Sequence[tuple[int, str]]) -> ObjectMeta:
        self._require()
        check_key(key)
        upload = await self._mp_upload(where, key, upload_id)
        if upload is None:
            raise InternalError()
        if upload.state != IN_PROGRESS:
            raise NoSuchUpload()
        seen: set[int] = set()
        for number, _ in parts:
            if number in seen:
                raise InternalError()
            seen.add(number)
        stored = await self._mp_parts(where, upload_id)
        chosen: list[PartInfo] = []
        for number, etag in parts:
            part = stored.get(number)
            if part is None or part.etag != etag:
                raise InvalidPart()
            chosen.append(part)
        if any(p.size < self.min_part_size for p in chosen[:-1]):
            raise EntityTooSmall()
        chosen.sort(key=lambda p: p.part_number)
        if len(chosen) > 1:
            size = chosen[0].size
            if any(p.size != size for p in chosen[:-1]) or chosen[-1].size > size:
                raise BadUpload()
        async with self._lock(where, key):
            meta = await self._mp_complete(where, upload_id, upload, chosen)
        return meta.with_md5_checksum()

    async def abort_multipart(self, where: Where, key: str, upload_id: str) -> None:
        self._require()
        check_key(key)
        upload = await self._mp_upload(where, key, upload_id)
        if upload is None:
            raise InternalError()
        if upload.state == IN_PROGRESS:
            await self._mp_abort(where, upload_id, upload)

    # --- buckets ------------------------------------------------------------

    async def drop_bucket(self, where: Where) -> None:
        """Delete every object and upload of a bucket (after the resource is deleted)."""
        self._require()
        await self._drop(where)

    async def purge(self, namespace: str, bucket: str) -> None:
        """`drop_bucket` by names: what the control API calls after a bucket delete."""
        await self.drop_bucket(Where(namespace, bucket))

    async def is_empty(self, where: Where) -> bool:
        self._require()
        async for _ in self._keys(where, "", None):
            return False
        return True

    # --- adapter steps --------------------------------------------------------

    @abc.abstractmethod
    async def _open(self) -> None: ...

    @abc.abstractmethod
    async def _close(self) -> None: ...

    @abc.abstractmethod
    async def _head(self, where: Where, key: str) -> ObjectMeta | None: ...

    @abc.abstractmethod
    async def _read(self, where: Where, meta: ObjectMeta, offset: int,
                    length: int) -> Body | None:
        """Chunks of exactly `meta.version`, or None if it was replaced meanwhile."""

    @abc.abstractmethod
    async def _stage(self, where: Where, body: Body) -> Any:
        """Stream the body somewhere invisible; return a handle for commit/discard."""

    @abc.abstractmethod
    async def _commit(self, where: Where, staged: Any, meta: ObjectMeta) -> None: ...

    @abc.abstractmethod
    async def _discard(self, where: Where, staged: Any) -> None: ...

    @abc.abstractmethod
    async def _delete(self, where: Where, keys: list[str]) -> None: ...

    @abc.abstractmethod
    def _keys(self, where: Where, prefix: str, start_after: str | None) -> AsyncIterator[str]:
        """Stored keys in R2 order, all > start_after, from the first that may have `prefix`."""

    @abc.abstractmethod
    async def _mp_create(self, where: Where, upload: Upload) -> str: ...

    @abc.abstractmethod
    async def _mp_upload(self, where: Where, key: str, upload_id: str) -> Upload | None:
        """The upload record (also a finished one), or None when there is none for `key`."""

    @abc.abstractmethod
    async def _mp_part(self, where: Where, upload_id: str, part_number: int, body: Body,
                       digests: Digests) -> str: ...

    @abc.abstractmethod
    async def _mp_parts(self, where: Where, upload_id: str) -> dict[int, PartInfo]: ...

    @abc.abstractmethod
    async def _mp_complete(self, where: Where, upload_id: str, upload: Upload,
                           parts: list[PartInfo]) -> ObjectMeta:
        """Assemble `parts` onto the key, drop all parts, leave a COMPLETED record."""

    @abc.abstractmethod
    async def _mp_abort(self, where: Where, upload_id: str, upload: Upload) -> None:
        """Drop all parts, leave an ABORTED record."""

    @abc.abstractmethod
    async def _drop(self, where: Where) -> None: ...


async def _counted(body: Body, digests: Digests) -> Body:
    async for chunk in body:
        if chunk:
            digests.update(chunk)
            yield chunk


def _now_ms() -> int:
    return int(time.time() * 1000)


def multipart_etag(md5_hexes: Sequence[str]) -> str:
    import hashlib

    h = hashlib.md5()
    for hx in md5_hexes:
        h.update(bytes.fromhex(hx))
    return f"{h.hexdigest()}-{len(md5_hexes)}"


def multipart_meta(upload: Upload, parts: Sequence[PartInfo], md5s: Sequence[str]) -> ObjectMeta:
    return ObjectMeta(upload.key, new_version(), sum(p.size for p in parts), multipart_etag(md5s),
                      _now_ms(), upload.http_metadata, upload.custom_metadata, {})
