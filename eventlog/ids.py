"""Time-ordered event ids (UUIDv7, RFC 9562), generated here rather than by a library."""

from __future__ import annotations

import os
import threading
import time
import uuid

_RAND_BITS = 74  # 12 bits of rand_a plus 62 bits of rand_b
_RAND_MASK = (1 << _RAND_BITS) - 1


class UuidV7Generator:
    """Strictly increasing UUIDv7 values within one process.

    When the clock repeats (or steps back) the random part is incremented
    instead of redrawn (RFC 9562 "monotonic random"), so ids sort in the
    order they were generated, which keeps the log and the audit trail
    readable in id order.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0

    def new(self) -> uuid.UUID:
        now_ms = time.time_ns() // 1_000_000
        with self._lock:
            if now_ms > self._last_ms:
                ms = now_ms
                rand = int.from_bytes(os.urandom(10), "big") & _RAND_MASK
                # Leave headroom so increments within the millisecond rarely overflow.
                rand >>= 1
            else:
                ms = self._last_ms
                rand = self._last_rand + 1
                if rand > _RAND_MASK:
                    ms += 1
                    rand = 0
            self._last_ms = ms
            self._last_rand = rand
        rand_a = rand >> 62
        rand_b = rand & ((1 << 62) - 1)
        value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
        return uuid.UUID(int=value)


_default = UuidV7Generator()


def new_event_id() -> uuid.UUID:
    return _default.new()


def uuid7_unix_ms(value: uuid.UUID) -> int:
    """The creation time embedded in a UUIDv7."""
    if value.version != 7:
        raise ValueError(f"{value} is not a UUIDv7")
    return value.int >> 80


def now_ms() -> int:
    return time.time_ns() // 1_000_000
