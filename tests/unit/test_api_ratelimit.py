"""The control API's write rate per namespace (services/api/ratelimit.py)."""

from __future__ import annotations

import pytest

from services.api.errors import ApiError
from services.api.ratelimit import WriteRate


def test_a_burst_then_the_rate_and_namespaces_apart() -> None:
    now = [0.0]
    rate = WriteRate(burst=3, per_s=0.5, clock=lambda: now[0])
    for _ in range(3):
        rate.take("a")
    with pytest.raises(ApiError) as refused:
        rate.take("a")
    assert (refused.value.status, refused.value.code) == (429, "too_many_requests")
    assert refused.value.extra["retry_after_s"] == 2
    rate.take("b")  # another namespace has its own bucket
    now[0] = 2.0  # one write back
    rate.take("a")
    with pytest.raises(ApiError):
        rate.take("a")
    now[0] = 1000.0  # never above the burst
    for _ in range(3):
        rate.take("a")
    with pytest.raises(ApiError):
        rate.take("a")


def test_settings() -> None:
    assert WriteRate.from_env({}).burst == 1200
    rate = WriteRate.from_env({"WDL_API_WRITE_BURST": "10", "WDL_API_WRITES_PER_S": "0.5"})
    assert (rate.burst, rate.per_s) == (10, 0.5)
    with pytest.raises(ValueError):
        WriteRate.from_env({"WDL_API_WRITES_PER_S": "0"})
