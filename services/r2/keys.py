"""Order-preserving, escape-proof names for tenant keys in S3 and on disk.

A tenant key is UTF-8 bytes encoded with base64 over an alphabet in ASCII
order (`-0-9A-Z_a-z`), cut into 200-character segments joined by `/` and
ended by `!`. So:

- no tenant byte reaches the path: `../`, `/`, NUL or `%` are just bytes;
- names of stored keys sort exactly as R2 sorts keys (by UTF-8 bytes):
  base64 over a sorted alphabet preserves byte order, `!` sorts below every
  alphabet character and below `/`, so a key sorts before its extensions;
- no segment exceeds a filesystem's 255-byte name limit, and a key whose
  encoding ends at a segment boundary (`X!`) never collides with a longer
  key's directory (`X/...`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

ALPHABET = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
SEGMENT = 200  # a multiple of 4: whole base64 groups per segment
END = "!"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
_ENCODED = re.compile(r"(?:[-0-9A-Za-z_]{200}/)*[-0-9A-Za-z_]{0,200}!")


def encode_bytes(data: bytes) -> str:
    out: list[str] = []
    for i in range(0, len(data), 3):
        chunk = data[i:i + 3]
        n = int.from_bytes(chunk.ljust(3, b"\0"), "big")
        chars = [ALPHABET[(n >> s) & 63] for s in (18, 12, 6, 0)]
        out.extend(chars[: len(chunk) + 1])
    return "".join(out)


def decode_bytes(text: str) -> bytes:
    out = bytearray()
    for i in range(0, len(text), 4):
        group = text[i:i + 4]
        n = 0
        for c in group.ljust(4, ALPHABET[0]):
            n = (n << 6) | _INDEX[c]
        out.extend(n.to_bytes(3, "big")[: len(group) - 1])
    return bytes(out)


def _segments(text: str) -> str:
    return "/".join(text[i:i + SEGMENT] for i in range(0, len(text), SEGMENT)) or ""


def encode_key(key: str) -> str:
    """The stored name of `key`: segments + `!`."""
    return _segments(encode_bytes(key.encode("utf-8", "surrogatepass"))) + END


def decode_key(name: str) -> str | None:
    """The tenant key of a stored name, or None for anything we did not write."""
    if _ENCODED.fullmatch(name) is None:
        return None
    try:
        return decode_bytes(name[:-1].replace("/", "")).decode("utf-8", "surrogatepass")
    except (KeyError, UnicodeDecodeError):
        return None


def listing_prefix(prefix: str) -> str:
    """A literal prefix of every stored name whose key starts with `prefix`
    (whole base64 groups only; callers filter the decoded keys)."""
    raw = prefix.encode("utf-8", "surrogatepass")
    return _segments(encode_bytes(raw[: len(raw) // 3 * 3]))


def name_token(name: str) -> str:
    """A single path segment for a platform name (namespace, bucket)."""
    return "n" + encode_bytes(name.encode("utf-8"))


@dataclass
class Selection:
    keys: list[str]  # objects to report, in order
    prefixes: list[str]
    next_start_after: str | None


async def select(keys: AsyncIterator[str], prefix: str, delimiter: str | None,
                 limit: int) -> Selection:
    """R2's list page over sorted keys (all > start_after): objects and delimited
    prefixes count together against `limit`; the cursor is the last key consumed
    (for a prefix group, its greatest key, as Miniflare does)."""
    out = Selection([], [], None)
    count = 0
    last_key: str | None = None
    current_group: str | None = None
    async for key in keys:
        if not key.startswith(prefix):
            if key > prefix:
                break  # sorted input: keys with the prefix are one contiguous run
            continue
        group = None
        if delimiter:
            at = key.find(delimiter, len(prefix))
            if at >= 0:
                group = key[: at + len(delimiter)]
        if group is not None and group == current_group:
            last_key = key
            continue
        if count == limit:
            out.next_start_after = last_key
            return out
        count += 1
        current_group = group
        last_key = key
        if group is None:
            out.keys.append(key)
        else:
            out.prefixes.append(group)
    return out
