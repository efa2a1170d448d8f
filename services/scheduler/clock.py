"""Time for the scheduler, injectable so tests can run many cron slots quickly."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...

    async def sleep_ms(self, ms: float) -> None:
        """Sleep for `ms` milliseconds of this clock's time."""


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def sleep_ms(self, ms: float) -> None:
        await asyncio.sleep(max(0.0, ms) / 1000)


class AcceleratedClock:
    """Virtual time running `factor` times faster than the wall clock.

    Replicas that share `(real_epoch_ms, virtual_epoch_ms, factor)` agree on
    the time, which matters because lease expiry is judged against the time
    each event carries.
    """

    def __init__(self, *, real_epoch_ms: int, virtual_epoch_ms: int, factor: float) -> None:
        if factor <= 0:
            raise ValueError("factor must be positive")
        self.real_epoch_ms = real_epoch_ms
        self.virtual_epoch_ms = virtual_epoch_ms
        self.factor = factor

    def now_ms(self) -> int:
        real = time.time_ns() / 1_000_000
        return int(self.virtual_epoch_ms + (real - self.real_epoch_ms) * self.factor)

    async def sleep_ms(self, ms: float) -> None:
        await asyncio.sleep(max(0.0, ms) / self.factor / 1000)

    @classmethod
    def parse(cls, spec: str) -> AcceleratedClock:
        """`real_epoch_ms:virtual_epoch_ms:factor` (for WDL_SCHEDULER_CLOCK)."""
        real, virtual, factor = spec.split(":")
        return cls(real_epoch_ms=int(real), virtual_epoch_ms=int(virtual), factor=float(factor))
