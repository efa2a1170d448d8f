"""Files only the platform's user may read: 0600 files in 0700 directories.

Generated workerd configs hold the internal token (a text binding), and token files
hold it or the admin token: a local user of a platform host who could read one
could call every internal endpoint (services/internal.py). Modes are set when the
file or directory is created (never world-readable for an instant) and again on
an existing one, whatever the umask.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """`path` (and missing parents) as a directory only its owner may list or enter."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(path, DIR_MODE)
    return path


def private_tempdir(prefix: str) -> Path:
    """A new directory under the system's temp dir, mode 0700 (mkdtemp's)."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def write_private(path: Path, text: str) -> Path:
    """Write `text` to `path`, mode 0600 from the first byte (an existing file is
    truncated and its mode tightened)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), FILE_MODE)
        f.write(text)
    return path
