"""A root key: 32 bytes of AES-256 key material known by a key id.

`repr`/`str` show only the key id; the material is reachable through
`material()` (for the envelope) and `export()` (to write configuration).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from typing import NoReturn

from services.crypto.errors import InvalidRootKey

ROOT_KEY_BYTES = 32
KEY_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class RootKey:
    __slots__ = ("_material", "key_id")

    key_id: str
    _material: bytes

    def __init__(self, key_id: str, material: bytes) -> None:
        if not isinstance(key_id, str) or KEY_ID_RE.fullmatch(key_id) is None:
            raise InvalidRootKey(
                "a root key id must be 1-64 characters of [A-Za-z0-9_.-], "
                "starting with a letter or digit"
            )
        if not isinstance(material, bytes) or len(material) != ROOT_KEY_BYTES:
            raise InvalidRootKey(f"root key {key_id!r} must be exactly {ROOT_KEY_BYTES} bytes")
        object.__setattr__(self, "key_id", key_id)
        object.__setattr__(self, "_material", material)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("RootKey is immutable")

    def __repr__(self) -> str:
        return f"RootKey(key_id={self.key_id!r}, material=<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("root keys are not picklable")

    def material(self) -> bytes:
        return self._material

    def export(self) -> str:
        """`kid:base64key`, the format of WDL_ROOT_KEYS entries. Contains the key!"""
        return f"{self.key_id}:{base64.b64encode(self._material).decode('ascii')}"

    @classmethod
    def generate(cls, key_id: str | None = None) -> RootKey:
        """A fresh random key; the default id is `k-<8 random hex digits>`."""
        return cls(key_id or f"k-{secrets.token_hex(4)}", secrets.token_bytes(ROOT_KEY_BYTES))

    @classmethod
    def parse(cls, entry: str, *, where: str = "root key entry") -> RootKey:
        """Parse `kid:base64key` (standard or URL-safe base64). Errors never echo the key."""
        key_id, sep, encoded = entry.strip().partition(":")
        if not sep:
            raise InvalidRootKey(f"{where}: expected 'kid:base64key'")
        if KEY_ID_RE.fullmatch(key_id) is None:
            raise InvalidRootKey(f"{where}: the key id is not 1-64 characters of [A-Za-z0-9_.-]")
        normalised = encoded.strip().replace("-", "+").replace("_", "/")
        try:
            material = base64.b64decode(normalised, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRootKey(f"{where} (key id {key_id!r}): not valid base64") from None
        if len(material) != ROOT_KEY_BYTES:
            raise InvalidRootKey(
                f"{where} (key id {key_id!r}): decodes to {len(material)} bytes, "
                f"expected {ROOT_KEY_BYTES}"
            )
        return cls(key_id, material)
