"""Static Assets of a wrangler project: read `assets`, walk its directory, upload new files.

`assets = { directory, binding, html_handling, not_found_handling, run_worker_first }`
as wrangler reads it. The directory's `.assetsignore` (gitignore syntax) leaves files
out; `.assetsignore`, `_headers` and `_redirects` themselves are never assets, the
last two are sent as text for the control API to parse. Each file is hashed as this
namespace's asset (services/assets/manifest.py); only the digests the platform lacks
are uploaded.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pathspec
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from cli.client import ControlClient
from cli.common import err
from eventlog.events.assets import MAX_ASSET_BYTES, MAX_ASSET_FILES
from services.assets import scoped_digest

HTML_HANDLING = ("auto-trailing-slash", "force-trailing-slash", "drop-trailing-slash", "none")
NOT_FOUND_HANDLING = ("none", "404-page", "single-page-application")
_KNOWN = {"directory", "binding", "html_handling", "not_found_handling", "run_worker_first",
          "experimental_serve_directly"}
_META = {".assetsignore", "_headers", "_redirects"}


class AssetsConfigError(ValueError):
    pass


@dataclass
class AssetsProject:
    directory: Path
    binding: str = ""
    html_handling: str = "auto-trailing-slash"
    not_found_handling: str = "none"
    run_worker_first: bool | list[str] = False
    warnings: list[str] = field(default_factory=list)


def read_assets(doc: dict[str, Any], config: str, root: Path) -> AssetsProject | None:
    raw = doc.get("assets")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise AssetsConfigError(f"{config}: `assets` must be a table")
    directory = raw.get("directory")
    if not isinstance(directory, str) or not directory:
        raise AssetsConfigError(f"{config}: `assets.directory` is required (the folder of "
                                "files to serve, e.g. \"./public\")")
    path = (root / directory).resolve()
    if not path.is_dir():
        raise AssetsConfigError(f"{config}: `assets.directory` {directory!r} is not a directory")
    out = AssetsProject(directory=path)
    for key in sorted(set(raw) - _KNOWN):
        out.warnings.append(f"`assets.{key}` is not a wrangler key; ignored")
    binding = raw.get("binding", "")
    if not isinstance(binding, str):
        raise AssetsConfigError(f"{config}: `assets.binding` must be a string")
    out.binding = binding
    for key, allowed in (("html_handling", HTML_HANDLING),
                         ("not_found_handling", NOT_FOUND_HANDLING)):
        value = raw.get(key, allowed[0] if key == "html_handling" else "none")
        if value not in allowed:
            raise AssetsConfigError(f"{config}: `assets.{key}` must be one of "
                                    f"{', '.join(allowed)}; got {value!r}")
        setattr(out, key, value)
    first = raw.get("run_worker_first", False)
    if not (isinstance(first, bool) or (isinstance(first, list)
                                        and all(isinstance(p, str) for p in first))):
        raise AssetsConfigError(f"{config}: `assets.run_worker_first` must be true, false or "
                                "a list of route patterns (\"/api/*\", \"!/api/docs/*\")")
    for p in first if isinstance(first, list) else ():
        if not (p.startswith("/") or p.startswith("!/")):
            raise AssetsConfigError(f"{config}: `assets.run_worker_first` pattern {p!r} must "
                                    "start with / (or !/ to negate)")
    out.run_worker_first = first
    if raw.get("experimental_serve_directly") is not None:
        out.warnings.append("`assets.experimental_serve_directly` is deprecated by wrangler; "
                            "WDL reads `run_worker_first` only")
    return out


def collect(project: AssetsProject) -> list[tuple[str, Path, int]]:
    """(asset path, file, size) of every file served, sorted; Cloudflare's limits checked."""
    root = project.directory
    ignore_file = root / ".assetsignore"
    lines = ignore_file.read_text("utf-8").splitlines() if ignore_file.is_file() else []
    spec = pathspec.PathSpec.from_lines("gitwildmatch", lines)
    files: list[tuple[str, Path, int]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        dirnames[:] = sorted(d for d in dirnames
                             if not spec.match_file(f"{rel_dir}/{d}/".lstrip("./")))
        for name in sorted(filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel in _META or spec.match_file(rel):
                continue
            full = Path(dirpath) / name
            if full.is_symlink() and not full.resolve().is_relative_to(root):
                raise AssetsConfigError(f"assets: {rel} links outside {root}")
            size = full.stat().st_size
            if size > MAX_ASSET_BYTES:
                raise AssetsConfigError(
                    f"assets: {rel} is {size:,} bytes; an asset has at most "
                    f"{MAX_ASSET_BYTES:,} bytes (25 MiB). Add it to .assetsignore to leave it "
                    "out")
            files.append(("/" + rel, full, size))
            if len(files) > MAX_ASSET_FILES:
                raise AssetsConfigError(f"assets: more than {MAX_ASSET_FILES:,} files in "
                                        f"{root}; add some to .assetsignore")
    return files


def _text(root: Path, name: str) -> str:
    path = root / name
    return path.read_text("utf-8") if path.is_file() else ""


def upload(client: ControlClient, namespace: str, project: AssetsProject, *,
           quiet: bool) -> tuple[dict[str, Any], dict[str, int]]:
    """The deploy request's `assets` and {uploaded, skipped, files}; new files only."""
    files = collect(project)
    digests = [scoped_digest(namespace, path.read_bytes()) for _, path, _ in files]
    missing: set[str] = set()
    unique = list(dict.fromkeys(digests))
    for i in range(0, len(unique), 10_000):
        answer = client.post(f"/v1/namespaces/{namespace}/assets/missing",
                             {"digests": unique[i:i + 10_000]})
        missing.update(answer.get("missing") or ())
    todo = [(rel, path, d) for (rel, path, _), d in zip(files, digests, strict=True)
            if d in missing]
    todo = list({d: (rel, path, d) for rel, path, d in todo}.values())

    def put(item: tuple[str, Path, str]) -> None:
        _, path, digest = item
        client.request("PUT", f"/v1/namespaces/{namespace}/assets/{digest}",
                       content=path.read_bytes(),
                       headers={"Content-Type": "application/octet-stream"})

    with Progress(TextColumn("assets"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("new files uploaded"), console=err,
                  disable=quiet or not err.is_terminal) as progress:
        task = progress.add_task("assets", total=len(todo))
        with ThreadPoolExecutor(max_workers=4) as pool:
            for _ in pool.map(put, todo):
                progress.advance(task)
    stats = {"files": len(files), "uploaded": len(todo),
             "skipped": len(set(digests)) - len(todo)}
    if not quiet:
        err.print(f"assets: {stats['files']} files, {stats['uploaded']} uploaded, "
                  f"{stats['skipped']} already there", highlight=False)
    body = {
        "binding": project.binding, "html_handling": project.html_handling,
        "not_found_handling": project.not_found_handling,
        "run_worker_first": project.run_worker_first,
        "files": [{"path": rel, "sha256": d, "size": size}
                  for (rel, _, size), d in zip(files, digests, strict=True)],
        "headers": _text(project.directory, "_headers"),
        "redirects": _text(project.directory, "_redirects"),
    }
    return body, stats
