"""S3BlobStore: blobs as objects `sha256/<hex>` in one S3 bucket (SigV4, boto3).

boto3 is synchronous, so every call runs in a worker thread
(`asyncio.to_thread`); one client is shared (boto3 clients are thread-safe).
Uploads carry `x-amz-checksum-sha256`, so the server itself refuses bytes
that do not hash to the digest we computed; reads are re-hashed by the port.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from services.blobstore.errors import (
    BlobNotFound,
    BlobStoreError,
    BlobStoreNotStarted,
    BlobStoreUnavailable,
    DigestMismatch,
)
from services.blobstore.port import BlobStore
from services.blobstore.ref import KEY_PREFIX, BlobRef, blob_key, digest_from_key
from services.blobstore.s3_settings import S3Settings, make_s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")

_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_NO_BUCKET = frozenset({"404", "NoSuchBucket", "NotFound"})
_REFUSED = frozenset(
    {
        "403",
        "AccessDenied",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "InvalidToken",
        "ExpiredToken",
        "AuthorizationHeaderMalformed",
        "InvalidSecurity",
        "XAdminUserNotFound",  # versitygw: unknown access key id
    }
)


class S3BlobStore(BlobStore):
    def __init__(self, settings: S3Settings) -> None:
        super().__init__()
        self.settings = settings
        self._client: S3Client | None = None

    def __repr__(self) -> str:
        return f"S3BlobStore({self.settings.where})"

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
        client: S3Client = make_s3_client(self.settings, max_pool_connections=10)
        return client

    def _ensure_bucket(self, client: S3Client) -> None:
        bucket = self.settings.bucket
        try:
            client.head_bucket(Bucket=bucket)
            return
        except ClientError as exc:
            if _code(exc) not in _NO_BUCKET:
                raise
        try:
            if self.settings.region == "us-east-1":
                client.create_bucket(Bucket=bucket)
            else:
                client.create_bucket(
                    Bucket=bucket,
                    CreateBucketConfiguration={"LocationConstraint": self.settings.region},  # type: ignore[typeddict-item]
                )
        except ClientError as exc:
            if _code(exc) != "BucketAlreadyOwnedByYou":  # lost a creation race: fine
                raise

    # --- steps ----------------------------------------------------------------

    async def _write(self, ref: BlobRef, data: bytes) -> None:
        client = self._require_client()
        key = ref.key
        checksum = base64.b64encode(bytes.fromhex(ref.sha256)).decode("ascii")

        def write() -> None:
            try:
                head = client.head_object(
                    Bucket=self.settings.bucket, Key=key, ChecksumMode="ENABLED"
                )
            except ClientError as exc:
                if _code(exc) not in _NOT_FOUND:
                    raise
            else:
                if head["ContentLength"] == ref.size and head.get("ChecksumSHA256") == checksum:
                    return  # already stored: idempotent no-op
            client.put_object(
                Bucket=self.settings.bucket,
                Key=key,
                Body=data,
                ChecksumSHA256=checksum,
                ContentType="application/octet-stream",
            )

        await self._call(f"put {key}", write)

    async def _read(self, sha256: str) -> bytes:
        client = self._require_client()
        key = blob_key(sha256)

        def read() -> bytes:
            try:
                response = client.get_object(Bucket=self.settings.bucket, Key=key)
            except ClientError as exc:
                if _code(exc) in _NOT_FOUND:
                    raise BlobNotFound(sha256) from None
                raise
            with response["Body"] as body:
                return body.read()

        return await self._call(f"get {key}", read)

    async def _exists(self, sha256: str) -> bool:
        client = self._require_client()
        key = blob_key(sha256)

        def exists() -> bool:
            try:
                client.head_object(Bucket=self.settings.bucket, Key=key)
            except ClientError as exc:
                if _code(exc) in _NOT_FOUND:
                    return False
                raise
            return True

        return await self._call(f"head {key}", exists)

    async def _delete(self, sha256: str) -> None:
        client = self._require_client()
        key = blob_key(sha256)
        await self._call(
            f"delete {key}", lambda: client.delete_object(Bucket=self.settings.bucket, Key=key)
        )

    async def _digests(self) -> AsyncIterator[str]:
        client = self._require_client()
        token: str | None = None
        while True:

            def page(token: str | None = token) -> tuple[list[str], str | None]:
                if token is None:
                    response = client.list_objects_v2(
                        Bucket=self.settings.bucket,
                        Prefix=KEY_PREFIX,
                        MaxKeys=self.settings.list_page_size,
                    )
                else:
                    response = client.list_objects_v2(
                        Bucket=self.settings.bucket,
                        Prefix=KEY_PREFIX,
                        MaxKeys=self.settings.list_page_size,
                        ContinuationToken=token,
                    )
                keys = [obj["Key"] for obj in response.get("Contents", []) if "Key" in obj]
                more = response.get("IsTruncated", False)
                return keys, response.get("NextContinuationToken") if more else None

            keys, token = await self._call("list", page)
            for key in keys:
                digest = digest_from_key(key)
                if digest is not None:
                    yield digest
            if token is None:
                return

    # --- plumbing ---------------------------------------------------------

    def _require_client(self) -> S3Client:
        if self._client is None:
            raise BlobStoreNotStarted("S3BlobStore is not started")
        return self._client

    async def _call(self, action: str, fn: Callable[[], T]) -> T:
        """Run a boto3 call in a thread and translate its failures to typed errors."""
        try:
            return await asyncio.to_thread(fn)
        except BlobStoreError:
            raise
        except ClientError as exc:
            raise self._client_error(action, exc) from None
        except BotoCoreError as exc:
            raise BlobStoreUnavailable(
                f"S3 {self.settings.where} is unreachable ({action}): {type(exc).__name__}"
            ) from exc

    def _client_error(self, action: str, exc: ClientError) -> BlobStoreError:
        code = _code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        where = self.settings.where
        if code in _REFUSED:
            return BlobStoreUnavailable(
                f"S3 {where} refused our credentials ({action}: {code}); check "
                "S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY and the bucket's permissions"
            )
        if code == "BadDigest":
            return DigestMismatch(f"S3 {where} computed a different sha256 for {action}")
        if status >= 500 or code in {"SlowDown", "ServiceUnavailable", "InternalError"}:
            return BlobStoreUnavailable(f"S3 {where} failed ({action}: {code}, HTTP {status})")
        return BlobStoreError(f"S3 {where} refused {action}: {code} (HTTP {status})")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
