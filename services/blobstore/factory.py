"""`open_blob_store(url)`: pick and configure an adapter from a URL (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

from services.blobstore.errors import BlobStoreConfigError
from services.blobstore.local import LocalBlobStore
from services.blobstore.port import BlobStore
from services.blobstore.s3 import S3BlobStore
from services.blobstore.s3_settings import S3Settings


def open_blob_store(url: str, *, environ: Mapping[str, str] | None = None) -> BlobStore:
    """A not-yet-started store for `url`; call `start()` or use `async with`.

    - `s3://<bucket>`: S3BlobStore; endpoint, credentials and region from
      S3_ENDPOINT_URL / S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY / S3_REGION
      (in `environ`, default `os.environ`).
    - `file:///absolute/path`: LocalBlobStore rooted at that directory.
    """
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise BlobStoreConfigError(f"expected s3://<bucket>, got {url!r}")
        return S3BlobStore(S3Settings.from_env(parts.netloc, environ))
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path or parts.query:
            raise BlobStoreConfigError(f"expected file:///absolute/path, got {url!r}")
        return LocalBlobStore(Path(unquote(parts.path)))
    raise BlobStoreConfigError(
        f"unsupported blob store URL {url!r}: use s3://<bucket> or file:///path"
    )
