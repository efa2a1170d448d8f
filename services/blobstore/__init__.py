"""Blob store port and adapters: content-addressed bundles under `sha256/<hex>`."""

from services.blobstore.errors import (
    BlobCorrupt,
    BlobNotFound,
    BlobStoreConfigError,
    BlobStoreError,
    BlobStoreNotStarted,
    BlobStoreUnavailable,
    BlobTooLarge,
    DigestMismatch,
    InvalidDigest,
)
from services.blobstore.factory import open_blob_store
from services.blobstore.local import LocalBlobStore
from services.blobstore.port import BlobStore
from services.blobstore.ref import BlobRef, blob_key, check_digest, sha256_hex
from services.blobstore.s3 import S3BlobStore
from services.blobstore.s3_settings import S3Settings

__all__ = [
    "BlobCorrupt",
    "BlobNotFound",
    "BlobRef",
    "BlobStore",
    "BlobStoreConfigError",
    "BlobStoreError",
    "BlobStoreNotStarted",
    "BlobStoreUnavailable",
    "BlobTooLarge",
    "DigestMismatch",
    "InvalidDigest",
    "LocalBlobStore",
    "S3BlobStore",
    "S3Settings",
    "blob_key",
    "check_digest",
    "open_blob_store",
    "sha256_hex",
]
