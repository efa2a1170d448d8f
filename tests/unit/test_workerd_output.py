"""The drain of workerd's stdout: a tenant's console.log is one line of any length."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from services.dataplane.workerd_process import MAX_LINE, WorkerdProcess

pytestmark = pytest.mark.unit


async def _pumped(data: bytes) -> list[str]:
    reader = asyncio.StreamReader(limit=2**16)
    reader.feed_data(data)
    reader.feed_eof()
    process = WorkerdProcess(Path("unused.capnp"), binary=sys.executable)
    await process._pump(reader)
    return list(process._output.lines)


async def test_a_line_longer_than_any_buffer_is_truncated_and_the_drain_goes_on() -> None:
    huge = b"x" * (1024 * 1024)
    lines = await _pumped(b"first\n" + huge + b"\nafter\n" + huge + b"\nlast")
    assert lines[0] == "first"
    assert lines[1] == "x" * MAX_LINE + " [... truncated]"
    assert lines[2:] == ["after", "x" * MAX_LINE + " [... truncated]", "last"]


async def test_lines_split_across_chunks_come_out_whole() -> None:
    lines = await _pumped(b"".join(b"line %d\n" % i for i in range(20000)))
    assert lines[-1] == "line 19999" and lines[-2] == "line 19998"
    assert len(lines) == 2000  # the kept tail


async def test_a_stop_survives_a_failed_drain() -> None:
    process = WorkerdProcess(Path("unused.capnp"), binary=sys.executable)

    async def broken() -> None:
        raise ValueError("Separator is not found, and chunk exceed the limit")

    process._drain = asyncio.create_task(broken())
    await asyncio.sleep(0)
    await process._settle_output()  # does not raise
