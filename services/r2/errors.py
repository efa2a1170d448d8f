"""R2 errors with the numeric codes and messages R2 (and Miniflare) answer.

The routes turn an `R2Error` into `{code, message, status}` on the wire; the
tenant wrapper re-raises it with the message workerd's R2 binding uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.r2.model import ObjectMeta


class R2StoreError(Exception):
    """A backend failure that is not the tenant's fault (unreachable, refused)."""


class R2StoreConfigError(R2StoreError):
    """The store URL or settings are wrong."""


class R2StoreNotStarted(R2StoreError):
    """An operation before `start()` or after `close()`."""


class R2Error(Exception):
    status = 400
    code = 10001
    default = "We encountered an internal error. Please try again."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default
        super().__init__(self.message)


class InternalError(R2Error):
    status = 500


class NoSuchKey(R2Error):
    status, code, default = 404, 10007, "The specified key does not exist."


class EntityTooLarge(R2Error):
    code, default = 100100, "Your proposed upload exceeds the maximum allowed object size."


class EntityTooSmall(R2Error):
    code, default = 10011, "Your proposed upload is smaller than the minimum allowed object size."


class MetadataTooLarge(R2Error):
    code, default = 10012, "Your metadata headers exceed the maximum allowed metadata size."


class InvalidObjectName(R2Error):
    code, default = 10020, "The specified object name is not valid."


class InvalidMaxKeys(R2Error):
    code, default = 10022, "MaxKeys params must be positive integer <= 1000."


class NoSuchUpload(R2Error):
    code, default = 10024, "The specified multipart upload does not exist."


class InvalidPart(R2Error):
    code, default = 10025, "One or more of the specified parts could not be found."


class InvalidArgument(R2Error):
    code, default = 10029, "Metadata missing or invalid"


class PreconditionFailed(R2Error):
    status, code = 412, 10031
    default = "At least one of the pre-conditions you specified did not hold."

    def __init__(self, meta: ObjectMeta | None = None) -> None:
        super().__init__()
        self.meta = meta


class BadDigest(R2Error):
    code = 10037

    def __init__(self, algorithm: str, provided: bytes, calculated: bytes) -> None:
        super().__init__(
            f"The {algorithm} checksum you specified did not match what we received.\n"
            f"You provided a {algorithm} checksum with value: {provided.hex()}\n"
            f"Actual {algorithm} was: {calculated.hex()}"
        )


class InvalidRange(R2Error):
    status, code, default = 416, 10039, "The requested range is not satisfiable"


class BadUpload(R2Error):
    status, code, default = 500, 10048, "There was a problem with the multipart upload."


class BucketNotFound(R2Error):
    """The (namespace, bucket) resource does not exist in the projection."""

    status, code, default = 404, 10006, "The specified bucket does not exist."
