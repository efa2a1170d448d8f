"""Workers KV limits and refusals, with Miniflare's messages (the behaviour reference).

Shared by the data routes (behind the tenant binding) and the control API's data
routes, so a limit is enforced the same way whichever door a value comes in by.
Each refusal carries the HTTP status Miniflare answers with; the tenant wrapper
turns it into `Error("KV <OP> failed: <status> <message>")` as workerd does.
"""

from __future__ import annotations

import json

MAX_KEY_BYTES = 512
MAX_VALUE_BYTES = 25 * 1024 * 1024
MAX_METADATA_BYTES = 1024
MIN_EXPIRATION_TTL_S = 60
MAX_LIST_KEYS = 1000
MAX_BULK_KEYS = 100
MAX_BULK_BYTES = 25 * 1024 * 1024


class KvRefusal(ValueError):
    def __init__(self, status: int, message: str, code: str = "kv_invalid") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def check_key(key: str) -> str:
    if key == "":
        raise KvRefusal(400, "Key names must not be empty")
    if key in (".", ".."):
        raise KvRefusal(400, f'Illegal key name "{key}". Please use a different name.')
    check_key_length(key)
    return key


def check_key_length(key: str) -> None:
    size = len(key.encode())
    if size > MAX_KEY_BYTES:
        raise KvRefusal(414, f"UTF-8 encoded length of {size} exceeds key length limit of "
                             f"{MAX_KEY_BYTES}.")


def value_too_large(size: int) -> KvRefusal:
    return KvRefusal(413, f"Value length of {size} exceeds limit of {MAX_VALUE_BYTES}.")


def check_metadata(raw: str) -> str:
    """`raw` is the metadata's JSON text; it must parse (any JSON value) and fit."""
    size = len(raw.encode())
    if size > MAX_METADATA_BYTES:
        raise KvRefusal(413, f"Metadata length of {size} exceeds limit of {MAX_METADATA_BYTES}.")
    try:
        json.loads(raw)
    except ValueError as exc:
        raise KvRefusal(400, "Metadata is not valid JSON") from exc
    return raw


def _int(raw: str) -> int | None:
    # parseInt-like: leading integer part of a decimal ("600.5" -> 600), else None.
    text = raw.strip()
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    end = 0
    while end < len(digits) and digits[end].isdigit():
        end += 1
    return sign * int(digits[:end]) if end else None


def expiration_from(raw_expiration: str | None, raw_ttl: str | None, now: int) -> int | None:
    """The absolute expiration (UNIX seconds) a put asks for, or None."""
    if raw_ttl is not None:
        ttl = _int(raw_ttl)
        if ttl is None or ttl <= 0:
            raise KvRefusal(400, f"Invalid expiration_ttl of {raw_ttl}. Please specify integer "
                                 "greater than 0.")
        if ttl < MIN_EXPIRATION_TTL_S:
            raise KvRefusal(400, f"Invalid expiration_ttl of {raw_ttl}. Expiration TTL must be "
                                 f"at least {MIN_EXPIRATION_TTL_S}.")
        return now + ttl
    if raw_expiration is not None:
        exp = _int(raw_expiration)
        if exp is None or exp <= now:
            raise KvRefusal(400, f"Invalid expiration of {raw_expiration}. Please specify "
                                 "integer greater than the current number of seconds since "
                                 "the UNIX epoch.")
        if exp < now + MIN_EXPIRATION_TTL_S:
            raise KvRefusal(400, f"Invalid expiration of {raw_expiration}. Expiration times "
                                 f"must be at least {MIN_EXPIRATION_TTL_S} seconds in the "
                                 "future.")
        return exp
    return None


def list_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return MAX_LIST_KEYS
    limit = _int(raw)
    if limit is None or limit < 1:
        raise KvRefusal(400, f"Invalid key_count_limit of {raw}. Please specify an integer "
                             "greater than 0.")
    if limit > MAX_LIST_KEYS:
        raise KvRefusal(400, f"Invalid key_count_limit of {raw}. Please specify an integer "
                             f"less than {MAX_LIST_KEYS}.")
    return limit
