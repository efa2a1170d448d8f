"""Static Assets manifests: what a version's files are, by path, and where their bytes are.

An asset's bytes are stored in the blob store *scoped to its namespace*: the blob is
`PREFIX + namespace + NUL + content`, so its key (`sha256/<hex>` of those bytes) is
the namespace's own. A manifest naming another namespace's digest names bytes whose
prefix is not its namespace's: the state service refuses to serve them
(`scoped_content`), so one tenant can never be served another's bytes, whatever
digests it writes (tests/security/test_assets_walls.py).

Manifest paths are tenant strings: they are checked here (absolute, no `.`/`..`/
empty segments, no backslash or control characters) and only ever used as keys of a
dict; no path of a manifest reaches a filesystem.

The manifest blob is canonical JSON::

    {"files": {"/index.html": ["<scoped sha256>", 1234, "text/html; charset=utf-8"]},
     "headers": [...], "redirects": {"static": {...}, "dynamic": [...]}, "v": 1}
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import posixpath
from dataclasses import dataclass
from typing import Any

from eventlog.events.assets import MAX_ASSET_BYTES, MAX_ASSET_FILES

PREFIX = b"wdl-asset/1\x00"
MAX_PATH_LENGTH = 1024

# What wrangler's `mime` package says where Python's table differs or lacks the type
# (and text/* with a charset, as wrangler adds it).
_TYPES = {
    ".html": "text/html", ".htm": "text/html", ".js": "text/javascript",
    ".mjs": "text/javascript", ".cjs": "application/node", ".css": "text/css",
    ".json": "application/json", ".map": "application/json", ".txt": "text/plain",
    ".md": "text/markdown", ".xml": "text/xml", ".svg": "image/svg+xml",
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
    ".webp": "image/webp", ".avif": "image/avif", ".ico": "image/vnd.microsoft.icon",
    ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf", ".otf": "font/otf",
    ".wasm": "application/wasm", ".pdf": "application/pdf", ".webmanifest":
    "application/manifest+json", ".csv": "text/csv", ".mp4": "video/mp4",
    ".webm": "video/webm", ".mp3": "audio/mpeg", ".zip": "application/zip",
    ".bin": "application/octet-stream", ".ts": "video/mp2t", ".yaml": "text/yaml",
    ".yml": "text/yaml", ".wav": "audio/wav", ".gz": "application/gzip",
}


class AssetError(ValueError):
    """A refusal: HTTP status, a stable code, a message naming what is wrong."""

    def __init__(self, status: int, code: str, message: str, field: str = "assets") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def scoped_bytes(namespace: str, content: bytes) -> bytes:
    return PREFIX + namespace.encode("utf-8") + b"\x00" + content


def scoped_digest(namespace: str, content: bytes) -> str:
    """The blob digest of `content` as the namespace's asset (what the CLI computes)."""
    h = hashlib.sha256(PREFIX)
    h.update(namespace.encode("utf-8") + b"\x00")
    h.update(content)
    return h.hexdigest()


def scoped_content(namespace: str, blob: bytes) -> bytes | None:
    """The asset's bytes, or None when the blob is not this namespace's asset."""
    head = scoped_bytes(namespace, b"")
    return blob[len(head):] if blob.startswith(head) else None


OWNER_PREFIX = b"wdl-asset-owner/1\x00"
RESERVED_CONTENT = b"wdl-asset"  # no module may start with it (services/bundles.py)


def owner_marker(namespace: str, digest: str) -> bytes:
    """A small blob stored beside each upload: "this namespace uploaded `digest`". Its
    digest is computable from (namespace, digest) alone, so the control API checks who
    uploaded a file without reading it; only the upload route writes one (asset blobs
    start with PREFIX, and modules may not start with RESERVED_CONTENT)."""
    return OWNER_PREFIX + namespace.encode("utf-8") + b"\x00" + digest.encode("ascii")


def owner_digest(namespace: str, digest: str) -> str:
    return hashlib.sha256(owner_marker(namespace, digest)).hexdigest()


def content_type(path: str) -> str | None:
    ext = posixpath.splitext(path)[1].lower()
    found = _TYPES.get(ext) or mimetypes.guess_type("x" + ext, strict=False)[0]
    if found is None:
        return None
    if found.startswith("text/") and "charset" not in found:
        found += "; charset=utf-8"
    return found


def check_path(field: str, path: object) -> str:
    """An asset path as the manifest keys it: `/dir/file.ext`."""
    if not isinstance(path, str) or not path.startswith("/") or len(path) > MAX_PATH_LENGTH:
        raise AssetError(400, "invalid_asset_path", f"{path!r}: an asset path starts with / "
                         f"and has at most {MAX_PATH_LENGTH} characters", field)
    if "\\" in path or any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise AssetError(400, "invalid_asset_path", f"{path!r}: backslashes and control "
                         "characters are not allowed in asset paths", field)
    if any(part in ("", ".", "..") for part in path[1:].split("/")):
        raise AssetError(400, "invalid_asset_path", f"{path!r}: empty, '.' and '..' segments "
                         "are not allowed in asset paths", field)
    return path


@dataclass(frozen=True)
class AssetFile:
    path: str
    sha256: str  # the scoped digest
    size: int


def check_files(files: list[AssetFile]) -> None:
    if len(files) > MAX_ASSET_FILES:
        raise AssetError(413, "too_many_assets", f"{len(files)} asset files; a version holds "
                         f"at most {MAX_ASSET_FILES:,} (Cloudflare's limit)")
    seen: set[str] = set()
    for i, f in enumerate(files):
        field = f"assets.files[{i}]"
        check_path(f"{field}.path", f.path)
        if f.path in seen:
            raise AssetError(400, "duplicate_asset", f"{f.path!r} appears twice", field)
        seen.add(f.path)
        if not 0 <= f.size <= MAX_ASSET_BYTES:
            raise AssetError(413, "asset_too_large", f"{f.path}: {f.size:,} bytes; an asset "
                             f"has at most {MAX_ASSET_BYTES:,} bytes (25 MiB, Cloudflare's "
                             "limit)", field)


def render_manifest(files: list[AssetFile], headers: list[dict[str, Any]],
                    redirects: dict[str, Any]) -> bytes:
    doc = {
        "v": 1,
        "files": {f.path: [f.sha256, f.size, content_type(f.path)] for f in files},
        "headers": headers,
        "redirects": redirects,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")
