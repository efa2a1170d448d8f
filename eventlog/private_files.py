"""The platform's files are readable by the platform's user only: directories 0700,
files 0600.

SQLite creates a database file 0644 (less the umask) and gives its `-wal`, `-shm` and
`-journal` files the database file's mode: creating the (empty) database file 0600
first makes all of them private. Files and directories made by an older version are
tightened when they are opened again.

It lives in `eventlog`, the lowest layer, because every layer keeps SQLite files (the
embedded log here, the audit store in `projections`, KV, queues, workflows and D1 in
`services`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("wdl.files")
DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def _tighten(path: Path, mode: int) -> None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    if stat.S_IMODE(info.st_mode) & ~mode == 0:
        return
    if stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX:
        # A sticky directory (/tmp and the like) is shared by design: never close it.
        log.warning("%s is a shared (sticky) directory; not restricting it", path)
        return
    if info.st_uid != os.geteuid():
        log.warning("%s belongs to another user; not restricting it", path)
        return
    os.chmod(path, mode)


def private_dir(path: Path) -> Path:
    """`path` as a directory only its owner can enter (created if missing; parents are
    created with the default mode: they may be shared, this one is the platform's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=DIR_MODE)
    _tighten(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """`path` as a file only its owner can read (created empty if missing; its folder
    must exist)."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    os.close(fd)
    _tighten(path, FILE_MODE)
    return path


def private_sqlite(path: Path) -> Path:
    """A SQLite database file (and its WAL, shared-memory and journal files) private to
    its owner, before `sqlite3.connect` opens it. The folder is created if missing
    (default mode: see `private_dir` for the platform's own folders)."""
    if str(path) in ("", ":memory:"):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    private_file(path)
    for suffix in SQLITE_SIDE_FILES:
        _tighten(path.with_name(path.name + suffix), FILE_MODE)
    return path


def write_private(path: Path, text: str) -> Path:
    """Write `text` to `path`, mode 0600 from the first byte (an existing file is
    truncated and tightened; a symlink at `path` is refused): generated configs that
    hold the internal token."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                 | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), FILE_MODE)
        f.write(text)
    return path
