"""Content addresses: a blob's sha256, its key in the store, and the ref `put` returns."""

from __future__ import annotations

import hashlib
import re

import msgspec

from services.blobstore.errors import DigestMismatch, InvalidDigest

KEY_PREFIX = "sha256/"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class BlobRef(msgspec.Struct, frozen=True, kw_only=True):
    """What a stored blob is known by: its digest and its size in bytes."""

    sha256: str
    size: int

    @property
    def key(self) -> str:
        return blob_key(self.sha256)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_digest(value: object) -> bool:
    return isinstance(value, str) and _SHA256_HEX.fullmatch(value) is not None


def check_digest(value: object) -> str:
    """Return `value` if it is a lowercase hex sha256, else raise InvalidDigest."""
    if not is_digest(value):
        raise InvalidDigest("expected a lowercase hex sha256 digest (64 characters)")
    assert isinstance(value, str)
    return value


def blob_key(sha256: str) -> str:
    """The object key (S3) or relative path (local) of a blob: `sha256/<hex>`."""
    return KEY_PREFIX + check_digest(sha256)


def digest_from_key(key: str) -> str | None:
    """The digest a key stands for, or None for keys outside the layout."""
    if not key.startswith(KEY_PREFIX):
        return None
    rest = key[len(KEY_PREFIX) :]
    return rest if is_digest(rest) else None


def ref_for(
    data: bytes, *, expected_sha256: str | None = None, expected_size: int | None = None
) -> BlobRef:
    """Hash `data` and check it against what the caller expected it to be."""
    ref = BlobRef(sha256=sha256_hex(data), size=len(data))
    if expected_size is not None and expected_size != ref.size:
        raise DigestMismatch(f"expected {expected_size} bytes, got {ref.size}")
    if expected_sha256 is not None and check_digest(expected_sha256) != ref.sha256:
        raise DigestMismatch(f"expected sha256 {expected_sha256}, the bytes hash to {ref.sha256}")
    return ref
