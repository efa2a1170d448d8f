"""What a version carries besides its code: the deploy's tag and message
(`wdl deploy --tag/--message`; the `version_metadata` binding's `tag`)."""

from __future__ import annotations

from eventlog.errors import InvalidEvent

# Cloudflare's annotations on a version: `workers/tag` at most 25 characters,
# `workers/message` at most 100 (the Workers Versions API). Refused past those here,
# not truncated: the deployer learns at once what was not stored.
TAG_MAX = 25
MESSAGE_MAX = 100

def printable(field: str, value: object, max_len: int) -> str:
    """A tag or message: a string of at most `max_len` printable characters (no control
    characters or line breaks: it is shown in one table cell and a worker's env)."""
    if not isinstance(value, str):
        raise InvalidEvent(field, "must be a string")
    if len(value) > max_len:
        raise InvalidEvent(field, f"longer than {max_len} characters")
    if value and not value.isprintable():
        raise InvalidEvent(field, "must be printable text (no control characters or "
                           "line breaks)")
    return value
