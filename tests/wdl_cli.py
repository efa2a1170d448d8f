"""`wdl` as a user runs it, in a subprocess with the environment given (e.g. `wdl dev`'s)."""

from __future__ import annotations

import asyncio

from tests.platform_stack import WDL


async def wdl(env: dict[str, str], *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(WDL, *args, env=env,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, f"wdl {args}: {err.decode()}{out.decode()}"
    return out.decode()
