"""Root keys from configuration.

Production: `WDL_ROOT_KEYS="k2:<base64>,k1:<base64>"` - comma-separated
`kid:base64key` entries (32-byte keys), the first one active for sealing,
all of them usable for opening.

Embedded dev mode only: when WDL_ROOT_KEYS is unset and the caller passes a
`dev_key_file`, that file (same format) is used, and created with one fresh
key and mode 0600 if it does not exist. A key file readable or writable by
group or others is refused.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from services.crypto.errors import InsecureKeyFile, NoRootKey
from services.crypto.keyring import Keyring
from services.crypto.rootkey import RootKey

ENV_ROOT_KEYS = "WDL_ROOT_KEYS"


def parse_root_keys(spec: str, *, source: str = ENV_ROOT_KEYS) -> Keyring:
    """Parse `kid:base64key` entries separated by commas or newlines; first is active."""
    entries = [e.strip() for e in spec.replace("\n", ",").split(",")]
    keys = [
        RootKey.parse(entry, where=f"{source} entry {index}")
        for index, entry in enumerate((e for e in entries if e), start=1)
    ]
    if not keys:
        raise NoRootKey(f"{source} holds no root keys")
    return Keyring(keys)


def generate_root_key(key_id: str | None = None) -> RootKey:
    return RootKey.generate(key_id)


def load_keyring(
    environ: Mapping[str, str] | None = None, *, dev_key_file: Path | None = None
) -> Keyring:
    """WDL_ROOT_KEYS if set; else the dev key file if allowed; else NoRootKey."""
    env = os.environ if environ is None else environ
    spec = env.get(ENV_ROOT_KEYS, "").strip()
    if spec:
        return parse_root_keys(spec)
    if dev_key_file is not None:
        return load_or_create_key_file(dev_key_file)
    raise NoRootKey(
        f"no root key configured: set {ENV_ROOT_KEYS}='kid:base64key' "
        "(generate one with `python -m services.crypto genkey`)"
    )


def load_or_create_key_file(path: Path) -> Keyring:
    """Read the key file, creating it (mode 0600, one fresh key) if it is missing."""
    if not path.exists():
        _create_key_file(path, RootKey.generate())
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InsecureKeyFile(
            f"{path} is accessible by group or others (mode {stat.S_IMODE(mode):o}); "
            f"run `chmod 600 {path}`"
        )
    return parse_root_keys(path.read_text(encoding="ascii"), source=str(path))


def _create_key_file(path: Path, key: RootKey) -> None:
    """Write to a private temp file, then hard-link it into place: concurrent
    starters agree on one key, and no reader ever sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(key.export() + "\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process won the race
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
