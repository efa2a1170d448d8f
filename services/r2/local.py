"""LocalR2Store: the embedded default, files under one directory.

Layout per bucket, `<root>/<ns token>/<bucket token>/` (tokens: keys.name_token):

- `o/<encoded key>`  the object's metadata (JSON), naming its data file;
- `d/<version>`      the object's bytes;
- `s/<id>`           a body being streamed in (staging);
- `u/<upload id>/`   a multipart upload: `upload.json` (kept, with its state, after
  completion or abort, as Miniflare keeps it), parts `<n>` + `<n>.json`.

A write streams to `s/`, is renamed to `d/<version>`, then the metadata file
is replaced with `os.replace` (the commit point) and the old data file is
unlinked. A reader that loses the race to that unlink retries from the
metadata, so it always gets one whole version.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from services.r2.errors import NoSuchUpload
from services.r2.keys import decode_key, encode_key, name_token
from services.r2.model import Digests, ObjectMeta, PartInfo, Where
from services.r2.port import (
    ABORTED,
    COMPLETED,
    IN_PROGRESS,
    Body,
    R2Store,
    Upload,
    multipart_meta,
)

CHUNK = 256 * 1024
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{16,128}")


class LocalR2Store(R2Store):
    def __init__(self, root: Path | str) -> None:
        super().__init__()
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalR2Store({str(self.root)!r})"

    async def _open(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)

    async def _close(self) -> None:
        return None

    def _base(self, where: Where) -> Path:
        return self.root / name_token(where.namespace) / name_token(where.bucket)

    def _meta_path(self, where: Where, key: str) -> Path:
        return self._base(where) / "o" / encode_key(key)

    # --- objects ------------------------------------------------------------

    async def _head(self, where: Where, key: str) -> ObjectMeta | None:
        return await asyncio.to_thread(_read_meta, self._meta_path(where, key))

    async def _read(self, where: Where, meta: ObjectMeta, offset: int,
                    length: int) -> Body | None:
        path = self._base(where) / "d" / meta.version
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            return None
        return _chunks(handle, offset, length)

    async def _stage(self, where: Where, body: Body) -> Path:
        staging = self._base(where) / "s"
        await asyncio.to_thread(staging.mkdir, parents=True, exist_ok=True)
        path = staging / secrets.token_hex(16)
        handle = await asyncio.to_thread(path.open, "wb")
        try:
            async for chunk in body:
                await asyncio.to_thread(handle.write, chunk)
            await asyncio.to_thread(_flush, handle)
        except BaseException:
            handle.close()
            await asyncio.to_thread(_unlink, path)
            raise
        handle.close()
        return path

    async def _commit(self, where: Where, staged: Path, meta: ObjectMeta) -> None:
        await asyncio.to_thread(self._commit_sync, where, staged, meta)

    def _commit_sync(self, where: Where, staged: Path, meta: ObjectMeta) -> None:
        base = self._base(where)
        (base / "d").mkdir(parents=True, exist_ok=True)
        os.replace(staged, base / "d" / meta.version)
        target = self._meta_path(where, meta.key)
        old = _read_meta(target)
        _write_json(target, meta.to_json(), base / "s")
        if old is not None and old.version != meta.version:
            _unlink(base / "d" / old.version)

    async def _discard(self, where: Where, staged: Path) -> None:
        await asyncio.to_thread(_unlink, staged)

    async def _delete(self, where: Where, keys: list[str]) -> None:
        await asyncio.to_thread(self._delete_sync, where, keys)

    def _delete_sync(self, where: Where, keys: list[str]) -> None:
        base = self._base(where)
        for key in keys:
            path = self._meta_path(where, key)
            old = _read_meta(path)
            if old is None:
                continue
            _unlink(path)
            _unlink(base / "d" / old.version)

    async def _keys(self, where: Where, prefix: str,
                    start_after: str | None) -> AsyncIterator[str]:
        # The embedded store lists by walking the tree: fine for dev-sized buckets.
        names = await asyncio.to_thread(_walk, self._base(where) / "o")
        keys = sorted(k for k in (decode_key(n) for n in names) if k is not None)
        for key in keys:
            if start_after is None or key > start_after:
                yield key

    # --- multipart ----------------------------------------------------------

    def _upload_dir(self, where: Where, upload_id: str) -> Path | None:
        if _UPLOAD_ID.fullmatch(upload_id) is None:
            return None
        return self._base(where) / "u" / upload_id

    async def _mp_create(self, where: Where, upload: Upload) -> str:
        upload_id = secrets.token_urlsafe(32)
        folder = self._base(where) / "u" / upload_id

        def create() -> None:
            folder.mkdir(parents=True)
            _write_json(folder / "upload.json", upload.to_json(), folder)

        await asyncio.to_thread(create)
        return upload_id

    async def _mp_upload(self, where: Where, key: str, upload_id: str) -> Upload | None:
        folder = self._upload_dir(where, upload_id)
        if folder is None:
            return None
        try:
            record = await asyncio.to_thread(_load_json, folder / "upload.json")
        except FileNotFoundError:
            return None
        upload = Upload.from_json(record)
        return upload if upload.key == key else None

    def _folder(self, where: Where, upload_id: str) -> Path:
        folder = self._upload_dir(where, upload_id)
        if folder is None:
            raise NoSuchUpload()
        return folder

    def _finish(self, folder: Path, upload: Upload, state: int) -> None:
        for entry in folder.iterdir():
            if entry.name != "upload.json":
                _unlink(entry)
        _write_json(folder / "upload.json", replace(upload, state=state).to_json(), folder)

    async def _mp_part(self, where: Where, upload_id: str, part_number: int, body: Body,
                       digests: Digests) -> str:
        folder = self._folder(where, upload_id)
        staged = await self._stage(where, body)
        info = PartInfo(part_number, digests.md5_hex, digests.size, digests.md5_hex)

        def place() -> None:
            record = Upload.from_json(_load_json(folder / "upload.json"))
            if record.state != IN_PROGRESS:  # aborted or completed while streaming
                _unlink(staged)
                raise NoSuchUpload()
            os.replace(staged, folder / str(part_number))
            _write_json(folder / f"{part_number}.json", info.__dict__, folder)

        await asyncio.to_thread(place)
        return info.etag

    async def _mp_parts(self, where: Where, upload_id: str) -> dict[int, PartInfo]:
        folder = self._folder(where, upload_id)

        def load() -> dict[int, PartInfo]:
            parts: dict[int, PartInfo] = {}
            for entry in folder.glob("*.json"):
                if entry.name != "upload.json":
                    info = PartInfo(**_load_json(entry))
                    parts[info.part_number] = info
            return parts

        return await asyncio.to_thread(load)

    async def _mp_complete(self, where: Where, upload_id: str, upload: Upload,
                           parts: list[PartInfo]) -> ObjectMeta:
        folder = self._folder(where, upload_id)
        meta = multipart_meta(upload, parts, [p.md5 for p in parts])

        def assemble() -> Path:
            staging = self._base(where) / "s"
            staging.mkdir(parents=True, exist_ok=True)
            target = staging / secrets.token_hex(16)
            with target.open("wb") as out:
                for part in parts:
                    with (folder / str(part.part_number)).open("rb") as src:
                        shutil.copyfileobj(src, out, CHUNK)
                _flush(out)
            return target

        staged = await asyncio.to_thread(assemble)
        await self._commit(where, staged, meta)
        await asyncio.to_thread(self._finish, folder, upload, COMPLETED)
        return meta

    async def _mp_abort(self, where: Where, upload_id: str, upload: Upload) -> None:
        await asyncio.to_thread(self._finish, self._folder(where, upload_id), upload, ABORTED)

    async def _drop(self, where: Where) -> None:
        await asyncio.to_thread(shutil.rmtree, self._base(where), True)


async def _chunks(handle: Any, offset: int, length: int) -> Body:
    try:
        await asyncio.to_thread(handle.seek, offset)
        left = length
        while left > 0:
            chunk = await asyncio.to_thread(handle.read, min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        handle.close()


def _read_meta(path: Path) -> ObjectMeta | None:
    try:
        return ObjectMeta.from_json(_load_json(path))
    except FileNotFoundError:
        return None


def _load_json(path: Path) -> Any:
    with path.open("rb") as f:
        return json.load(f)


def _write_json(path: Path, value: Any, tmp_dir: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f".{secrets.token_hex(8)}.json"
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(value, f)
        _flush(f)
    os.replace(tmp, path)


def _flush(handle: Any) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _walk(top: Path) -> list[str]:
    names: list[str] = []
    for dirpath, _dirs, files in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        for f in files:
            names.append(f if rel == "." else f"{rel}/{f}")
    return names
