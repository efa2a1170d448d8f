"""Server-side version ids: time-ordered, unique, immutable.

A UUIDv7 rendered in 26 characters of lowercase Crockford base32, so ids sort
(as strings) in the order they were created and fit the catalogue's id rule.
"""

from __future__ import annotations

from eventlog.ids import new_event_id

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_version_id() -> str:
    value = new_event_id().int
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))
