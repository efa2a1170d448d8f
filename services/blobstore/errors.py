"""Typed failures of the blob store, each with a stable machine-readable code.

Messages name digests, buckets and endpoints, never credentials.
"""

from __future__ import annotations

from typing import ClassVar


class BlobStoreError(Exception):
    """Base of every error the blob store raises on purpose."""

    code: ClassVar[str] = "blob_store_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message}


class InvalidDigest(BlobStoreError, ValueError):
    """The argument is not a lowercase hex sha256 digest (64 characters)."""

    code = "invalid_digest"


class BlobNotFound(BlobStoreError, KeyError):
    """No blob is stored under this digest."""

    code = "blob_not_found"

    def __init__(self, sha256: str) -> None:
        super().__init__(f"no blob stored under sha256/{sha256}")
        self.sha256 = sha256

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class BlobCorrupt(BlobStoreError):
    """The stored bytes do not hash to the digest they are stored under."""

    code = "blob_corrupt"

    def __init__(self, sha256: str, actual_sha256: str, size: int) -> None:
        super().__init__(
            f"blob sha256/{sha256} is corrupt: its {size} stored bytes hash to {actual_sha256}"
        )
        self.sha256 = sha256
        self.actual_sha256 = actual_sha256
        self.size = size


class DigestMismatch(BlobStoreError, ValueError):
    """`put` was told to expect a digest or size that the bytes do not have; nothing stored."""

    code = "digest_mismatch"


class BlobTooLarge(BlobStoreError, ValueError):
    """A streamed upload exceeded the caller's size limit; nothing stored."""

    code = "blob_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"blob exceeds the {limit} byte limit")
        self.limit = limit


class BlobStoreUnavailable(BlobStoreError):
    """The backing store cannot be reached, or refused our credentials."""

    code = "blob_store_unavailable"


class BlobStoreConfigError(BlobStoreError, ValueError):
    """The store's URL or settings are incomplete or malformed."""

    code = "blob_store_config"


class BlobStoreNotStarted(BlobStoreError, RuntimeError):
    """An operation was called before `start()` or after `stop()`."""

    code = "blob_store_not_started"
