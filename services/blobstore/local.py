"""LocalBlobStore: blobs as files in a directory (the embedded / `wdl dev` default).

Layout under the root: `sha256/<hex>` holds a blob; `tmp/` holds uploads in
flight. A write goes to a temp file in `tmp/` (same filesystem), is fsynced,
renamed over `sha256/<hex>` with `os.replace` and the directory is fsynced, so
a crash leaves either no blob or the whole blob, never a torn one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from services.blobstore.errors import BlobNotFound, BlobStoreUnavailable
from services.blobstore.port import BlobStore
from services.blobstore.ref import KEY_PREFIX, BlobRef, blob_key, is_digest

_BLOBS = KEY_PREFIX.rstrip("/")
_TMP = "tmp"
_CHUNK = 1024 * 1024


class LocalBlobStore(BlobStore):
    def __init__(self, root: Path | str) -> None:
        super().__init__()
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalBlobStore(root={str(self.root)!r})"

    def path_of(self, sha256: str) -> Path:
        """Where the blob with this digest lives (whether or not it exists)."""
        return self.root / blob_key(sha256)

    # --- lifecycle --------------------------------------------------------

    async def _open(self) -> None:
        await asyncio.to_thread(self._make_dirs)

    async def _close(self) -> None:
        return None

    def _make_dirs(self) -> None:
        try:
            (self.root / _BLOBS).mkdir(parents=True, exist_ok=True)
            (self.root / _TMP).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BlobStoreUnavailable(
                f"cannot use {self.root} as a blob directory: {exc.strerror}"
            ) from exc
        _fsync_dir(self.root)

    # --- steps ----------------------------------------------------------------

    async def _write(self, ref: BlobRef, data: bytes) -> None:
        await asyncio.to_thread(self._write_sync, ref, data)

    def _write_sync(self, ref: BlobRef, data: bytes) -> None:
        target = self.path_of(ref.sha256)
        if _holds(target, ref):
            return  # already stored: idempotent no-op
        fd, tmp_name = tempfile.mkstemp(prefix=f"{ref.sha256[:16]}.", dir=self.root / _TMP)
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        _fsync_dir(target.parent)

    async def _read(self, sha256: str) -> bytes:
        path = self.path_of(sha256)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise BlobNotFound(sha256) from None

    async def _exists(self, sha256: str) -> bool:
        return await asyncio.to_thread(self.path_of(sha256).is_file)

    async def _delete(self, sha256: str) -> None:
        await asyncio.to_thread(self._delete_sync, sha256)

    def _delete_sync(self, sha256: str) -> None:
        path = self.path_of(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(path.parent)

    async def _digests(self) -> AsyncIterator[str]:
        names = await asyncio.to_thread(self._names)
        for name in names:
            if is_digest(name):
                yield name

    def _names(self) -> list[str]:
        with os.scandir(self.root / _BLOBS) as entries:
            return sorted(entry.name for entry in entries if entry.is_file())


def _holds(path: Path, ref: BlobRef) -> bool:
    """True if `path` already holds exactly the blob (a damaged copy gets rewritten)."""
    try:
        if path.stat().st_size != ref.size:
            return False
        hasher = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                hasher.update(chunk)
    except FileNotFoundError:
        return False
    return hasher.hexdigest() == ref.sha256


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
