"""`open_r2_store(url)`: pick and configure an R2Store from a URL (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

from services.blobstore.errors import BlobStoreConfigError
from services.blobstore.s3_settings import S3Settings
from services.r2.errors import R2StoreConfigError
from services.r2.local import LocalR2Store
from services.r2.port import R2Store
from services.r2.s3 import S3R2Store


def open_r2_store(url: str, *, environ: Mapping[str, str] | None = None) -> R2Store:
    """A not-yet-started store; call `start()` or use `async with`.

    - `s3://<bucket>`: one S3 bucket (created if missing) for every tenant bucket;
      endpoint and credentials from S3_ENDPOINT_URL / S3_ACCESS_KEY_ID /
      S3_SECRET_ACCESS_KEY / S3_REGION (in `environ`, default `os.environ`).
    - `file:///absolute/dir`: LocalR2Store under that directory.
    """
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise R2StoreConfigError(f"expected s3://<bucket>, got {url!r}")
        try:
            return S3R2Store(S3Settings.from_env(parts.netloc, environ))
        except BlobStoreConfigError as exc:
            raise R2StoreConfigError(str(exc)) from None
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/") or parts.query:
            raise R2StoreConfigError(f"expected file:///absolute/dir, got {url!r}")
        return LocalR2Store(Path(unquote(parts.path)))
    raise R2StoreConfigError(f"unsupported R2 store URL {url!r}: use s3://<bucket> or file:///dir")
