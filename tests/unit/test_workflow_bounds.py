"""Depth and length bounds of tenant data in the workflow engine (services/workflows/bounds.py)."""

from __future__ import annotations

import json
import time

import pytest

from services.workflows import bounds

pytestmark = pytest.mark.unit


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("raw,depth", [(b"1", 0), (b'"[[["', 0), (b"[]", 1),
                                       (b'{"a":[1,{"b":"]]\\"[["}]}', 3), (nested(64), 64)])
def test_scan_depth_counts_levels_outside_strings(raw: bytes, depth: int) -> None:
    assert bounds.scan_depth(raw, 64) == depth
    assert bounds.loads(raw, 64) == json.loads(raw)


def test_too_deep_text_is_refused_before_parsing() -> None:
    with pytest.raises(bounds.TooDeep):
        bounds.loads(nested(100_000), 64)  # json.loads would raise RecursionError


def test_unbalanced_text_is_not_json() -> None:
    with pytest.raises(ValueError):
        bounds.scan_depth(b"[" * 5000, 10_000)


def test_scanning_a_large_answer_is_cheap() -> None:
    raw = b"[" + b",".join([b'[[1],{"k":"v\\"]"}]'] * 60_000) + b"]"
    started = time.perf_counter()
    assert bounds.scan_depth(raw, 64) == 3
    assert time.perf_counter() - started < 0.5


def test_depth_of_a_value_is_checked_iteratively() -> None:
    value: list[object] = []
    for _ in range(50_000):
        value = [value]
    assert bounds.depth_exceeds(value, 64)
    assert not bounds.depth_exceeds({"a": [[1]]}, 3) and bounds.depth_exceeds({"a": [[1]]}, 2)


def test_errors_keep_name_message_and_stack_clipped() -> None:
    error = bounds.clean_error({"name": "N" * 999, "message": "m" * 10**6, "stack": 5,
                                "other": "x"})
    assert set(error) == {"name", "message", "stack"}
    assert len(error["name"]) == bounds.MAX_ERROR_NAME
    assert len(error["message"]) == bounds.MAX_ERROR_MESSAGE
    assert error["message"].endswith("characters]")
    assert bounds.clean_error("plain")["message"] == "plain"


def test_scan_depth_is_linear_on_an_unterminated_string() -> None:
    # Each `"` after a backslash started a new attempt that ran to the end of the text:
    # 128 KB took 63 s. Unterminated, the string runs to the end once; not JSON.
    raw = b'["' + b'\\"' * 64_000
    started = time.monotonic()
    with pytest.raises(ValueError):
        bounds.loads(raw, 64)
    assert time.monotonic() - started < 1.0
