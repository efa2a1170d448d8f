"""How often a namespace may write through the control API.

Every write is an event appended to the log for good (accepted, or refused by the
fold: both are kept, each an audit row too), folded again by every rebuild. Quotas
(services/api/quotas.py) bound what a namespace holds; this bounds how fast it writes,
so one tenant's loop cannot grow the log — and take the projector's time from every
other namespace — at the speed of the API. Cloudflare's API allows 1,200 requests per
5 minutes per user: a namespace here may write `burst` (1,200) at once, then `per_s`
(4) a second. Admins are the operators: not limited.

One bucket per namespace per API process (the log is shared; with several API replicas
each has its own buckets, so the bound scales with them).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from services.api.errors import ApiError

BURST_ENV = "WDL_API_WRITE_BURST"
RATE_ENV = "WDL_API_WRITES_PER_S"


@dataclass
class WriteRate:
    burst: float = 1200.0
    per_s: float = 4.0
    clock: Callable[[], float] = time.monotonic
    # namespace -> (tokens left, when counted); a namespace full again is forgotten.
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WriteRate:
        source = os.environ if env is None else env
        burst = float(source.get(BURST_ENV) or 1200)
        per_s = float(source.get(RATE_ENV) or 4)
        if burst < 1 or per_s <= 0:
            raise ValueError(f"{BURST_ENV} must be at least 1 and {RATE_ENV} above 0")
        return cls(burst, per_s)

    def take(self, namespace: str) -> None:
        """Count one write of `namespace`; 429 `too_many_requests` when it has none left."""
        now = self.clock()
        tokens, at = self._buckets.get(namespace, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.per_s)
        if tokens < 1:
            wait = math.ceil((1 - tokens) / self.per_s)
            self._buckets[namespace] = (tokens, now)
            raise ApiError(429, "too_many_requests",
                           f"namespace {namespace} writes too often: at most "
                           f"{self.burst:g} at once, then {self.per_s:g} a second "
                           f"({BURST_ENV}, {RATE_ENV}); retry in {wait} s",
                           retry_after_s=wait)
        self._buckets[namespace] = (tokens - 1, now)
        if len(self._buckets) > 100_000:  # full buckets carry no state: drop them
            self._buckets = {k: v for k, v in self._buckets.items()
                             if v[0] + (now - v[1]) * self.per_s < self.burst}
