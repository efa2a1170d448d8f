"""Value types and the rules every R2Store shares: limits, conditions, ranges.

The rules are Miniflare's (workers/r2/validator.worker.ts), so a backend only
stores bytes and metadata; it never re-implements R2 semantics.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from services.r2.errors import (
    BadDigest,
    InvalidArgument,
    InvalidMaxKeys,
    InvalidObjectName,
    InvalidRange,
    MetadataTooLarge,
    PreconditionFailed,
)

MAX_KEY_BYTES = 1024
MAX_METADATA_SIZE = 2048
MAX_LIST_KEYS = 1000
MAX_LIST_WITH_METADATA = 100
MAX_VALUE_SIZE = 5_363_466_240  # 5 GiB - 5 MiB, R2's single-put limit
MIN_PART_SIZE = 5 * 1024 * 1024
HTTP_FIELDS = (
    "contentType", "contentLanguage", "contentDisposition", "contentEncoding", "cacheControl",
)
HASHES = (("md5", "MD5"), ("sha1", "SHA-1"), ("sha256", "SHA-256"), ("sha384", "SHA-384"),
          ("sha512", "SHA-512"))


@dataclass(frozen=True)
class Where:
    """One tenant bucket: every byte a store keeps is keyed by this pair."""

    namespace: str
    bucket: str


@dataclass(frozen=True)
class ObjectMeta:
    key: str
    version: str
    size: int
    etag: str
    uploaded: int  # ms since the epoch
    http_metadata: dict[str, Any] = field(default_factory=dict)
    custom_metadata: dict[str, str] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)  # hex

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "version": self.version, "size": self.size, "etag": self.etag,
            "uploaded": self.uploaded, "httpMetadata": self.http_metadata,
            "customMetadata": self.custom_metadata, "checksums": self.checksums,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ObjectMeta:
        return cls(
            key=str(data["key"]), version=str(data["version"]), size=int(data["size"]),
            etag=str(data["etag"]), uploaded=int(data["uploaded"]),
            http_metadata=dict(data.get("httpMetadata") or {}),
            custom_metadata=dict(data.get("customMetadata") or {}),
            checksums=dict(data.get("checksums") or {}),
        )

    def listed(self, include: frozenset[str]) -> ObjectMeta:
        """The shape `list` answers: metadata only when asked for."""
        return replace(
            self,
            http_metadata=self.http_metadata if "httpMetadata" in include else {},
            custom_metadata=self.custom_metadata if "customMetadata" in include else {},
        )

    def with_md5_checksum(self) -> ObjectMeta:
        # R2 reports the etag as the md5 checksum when it is a plain md5.
        if re.fullmatch(r"[0-9a-f]{32}", self.etag) and "md5" not in self.checksums:
            return replace(self, checksums={**self.checksums, "md5": self.etag})
        return self


@dataclass(frozen=True)
class Etag:
    type: str  # strong | weak | wildcard
    value: str = ""


@dataclass(frozen=True)
class Conditional:
    etag_matches: tuple[Etag, ...] | None = None
    etag_does_not_match: tuple[Etag, ...] | None = None
    uploaded_before: int | None = None  # ms
    uploaded_after: int | None = None
    seconds_granularity: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Conditional | None:
        if not data:
            return None

        def etags(name: str) -> tuple[Etag, ...] | None:
            raw = data.get(name)
            if raw is None:
                return None
            if not isinstance(raw, list) or not raw:
                raise InvalidArgument()
            return tuple(Etag(str(e["type"]), str(e.get("value", ""))) for e in raw)

        def ms(name: str) -> int | None:
            raw = data.get(name)
            return None if raw is None else int(raw)

        return cls(etags("etagMatches"), etags("etagDoesNotMatch"), ms("uploadedBefore"),
                   ms("uploadedAfter"), bool(data.get("secondsGranularity")))

    def holds(self, meta: ObjectMeta | None) -> bool:
        """Miniflare's `_testR2Conditional`, including the If-Match/If-Modified precedence."""
        if meta is None:
            return self.etag_matches is None and self.uploaded_after is None
        def trunc(ms: int) -> int:
            return ms // 1000 * 1000 if self.seconds_granularity else ms

        if_match = self.etag_matches is None or _includes(self.etag_matches, meta.etag, False)
        if_none = self.etag_does_not_match is None or not _includes(
            self.etag_does_not_match, meta.etag, True)
        last = trunc(meta.uploaded)
        modified = (self.uploaded_after is None or trunc(self.uploaded_after) < last
                    or (self.etag_does_not_match is not None and if_none))
        unmodified = (self.uploaded_before is None or last < trunc(self.uploaded_before)
                      or (self.etag_matches is not None and if_match))
        return if_match and if_none and modified and unmodified

    def check(self, meta: ObjectMeta | None) -> None:
        if not self.holds(meta):
            raise PreconditionFailed(meta)


def _includes(conds: tuple[Etag, ...], etag: str, weak: bool) -> bool:
    return any(c.type == "wildcard" or (c.value == etag and (c.type == "strong" or weak))
               for c in conds)


@dataclass(frozen=True)
class RangeSpec:
    offset: int | None = None
    length: int | None = None
    suffix: int | None = None
    header: str | None = None

    @classmethod
    def from_json(cls, rng: Mapping[str, Any] | None, header: str | None) -> RangeSpec | None:
        if header is not None:
            return cls(header=header)
        if not rng:
            return None

        def num(name: str) -> int | None:
            raw = rng.get(name)
            return None if raw is None else int(raw)

        return cls(num("offset"), num("length"), num("suffix"))

    def resolve(self, size: int) -> tuple[int, int] | None:
        """(offset, length) to read, or None for the whole object."""
        if self.header is not None:
            return _parse_range_header(self.header, size)
        offset, length = self.offset, self.length
        if self.suffix is not None:
            if self.suffix <= 0:
                raise InvalidRange()
            suffix = min(self.suffix, size)
            offset, length = size - suffix, suffix
        offset = 0 if offset is None else offset
        length = size - offset if length is None else length
        if offset < 0 or offset > size or length <= 0:
            raise InvalidRange()
        return offset, min(length, size - offset)


def _parse_range_header(header: str, size: int) -> tuple[int, int] | None:
    # Like Miniflare's parseRanges: anything but exactly one satisfiable range is the whole.
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header, re.IGNORECASE)
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):
        suffix = min(int(m.group(2)), size)
        return (size - suffix, suffix) if suffix > 0 else None
    start = int(m.group(1))
    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    if start >= size or end < start:
        return None
    return start, end - start + 1


def check_key(key: str) -> str:
    if not isinstance(key, str) or len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidObjectName()
    return key


def check_custom_metadata(custom: Mapping[str, str]) -> None:
    total = 0
    for k, v in custom.items():
        total += _serialised_len(k) + _serialised_len(v)
    if total > MAX_METADATA_SIZE:
        raise MetadataTooLarge()


def _serialised_len(text: str) -> int:
    return len(text) * 2 if any(ord(c) >= 256 for c in text) else len(text)


def check_limit(limit: int | None) -> None:
    if limit is not None and not 1 <= limit <= MAX_LIST_KEYS:
        raise InvalidMaxKeys()


def new_version() -> str:
    return secrets.token_hex(16)


class Digests:
    """Hashes a streamed body: md5 always (it is the etag), others when expected."""

    def __init__(self, expected: Mapping[str, bytes]) -> None:
        self.expected = dict(expected)
        names = {"md5", *self.expected}
        self._h = {n: hashlib.new(n) for n in names}
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        for h in self._h.values():
            h.update(chunk)

    def verify(self) -> dict[str, str]:
        """Checksums to record (hex); raises BadDigest on a mismatch, in R2's order."""
        recorded: dict[str, str] = {}
        for field_, name in HASHES:
            want = self.expected.get(field_)
            if want is None:
                continue
            got = self._h[field_].digest()
            if got != want:
                raise BadDigest(name, want, got)
            recorded[field_] = got.hex()
        return recorded

    @property
    def md5_hex(self) -> str:
        return self._h["md5"].hexdigest()


@dataclass(frozen=True)
class ListOptions:
    prefix: str = ""
    delimiter: str | None = None
    start_after: str | None = None
    limit: int = MAX_LIST_KEYS
    include: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ListPage:
    objects: list[ObjectMeta]
    delimited_prefixes: list[str]
    next_start_after: str | None  # None: not truncated

    def to_json(self) -> dict[str, Any]:
        return {"objects": [o.to_json() for o in self.objects],
                "delimitedPrefixes": self.delimited_prefixes,
                "nextStartAfter": self.next_start_after}


@dataclass(frozen=True)
class PartInfo:
    part_number: int
    etag: str
    size: int
    md5: str
