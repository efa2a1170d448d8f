"""Where an S3BlobStore connects: endpoint, credentials, region and bucket."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.blobstore.errors import BlobStoreConfigError

ENV_ENDPOINT = "S3_ENDPOINT_URL"
ENV_ACCESS_KEY = "S3_ACCESS_KEY_ID"
ENV_SECRET_KEY = "S3_SECRET_ACCESS_KEY"
ENV_REGION = "S3_REGION"
DEFAULT_REGION = "us-east-1"

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class S3Settings:
    """Connection settings. The secret key is kept out of `repr`.

    Leave both keys unset to use boto3's default credential chain (instance
    roles etc.); setting only one of them is a configuration error.
    """

    bucket: str
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    region: str = DEFAULT_REGION
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    max_attempts: int = 3
    list_page_size: int = 1000

    def __post_init__(self) -> None:
        if _BUCKET.fullmatch(self.bucket) is None or ".." in self.bucket:
            raise BlobStoreConfigError(
                f"{self.bucket!r} is not a valid S3 bucket name "
                "(3-63 characters: lowercase letters, digits, '.' and '-')"
            )
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise BlobStoreConfigError(
                f"set both {ENV_ACCESS_KEY} and {ENV_SECRET_KEY}, or neither "
                "to use the default AWS credential chain"
            )
        if self.max_attempts < 1:
            raise BlobStoreConfigError("max_attempts must be at least 1")
        if not 1 <= self.list_page_size <= 1000:
            raise BlobStoreConfigError("list_page_size must be between 1 and 1000")

    @classmethod
    def from_env(cls, bucket: str, environ: Mapping[str, str] | None = None) -> S3Settings:
        """Settings for `bucket` from S3_ENDPOINT_URL, S3_ACCESS_KEY_ID,
        S3_SECRET_ACCESS_KEY and S3_REGION (empty values count as unset)."""
        env = os.environ if environ is None else environ
        return cls(
            bucket=bucket,
            endpoint_url=env.get(ENV_ENDPOINT) or None,
            access_key_id=env.get(ENV_ACCESS_KEY) or None,
            secret_access_key=env.get(ENV_SECRET_KEY) or None,
            region=env.get(ENV_REGION) or DEFAULT_REGION,
        )

    @property
    def where(self) -> str:
        """A human description of the target, safe for messages."""
        return f"bucket {self.bucket!r} at {self.endpoint_url or 'the default AWS endpoint'}"


def make_s3_client(settings: S3Settings, *, max_pool_connections: int = 10) -> Any:
    """A boto3 S3 client for `settings` (blocking to create: call it in a thread).

    Path-style SigV4; checksums only where S3 requires them, since the stores
    hash what they write and read themselves.
    """
    import boto3
    from botocore.config import Config

    s = settings
    config = Config(
        signature_version="s3v4", region_name=s.region, s3={"addressing_style": "path"},
        connect_timeout=s.connect_timeout, read_timeout=s.read_timeout,
        retries={"max_attempts": s.max_attempts, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=max_pool_connections,
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=s.endpoint_url, aws_access_key_id=s.access_key_id,
        aws_secret_access_key=s.secret_access_key, region_name=s.region, config=config)
