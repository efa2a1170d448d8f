"""`python -m bench workflows`: the empty `step.do` overhead (bench/workflows_step.py,
which holds the measurement so `bench/queues.py` can call `measure()` too)."""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from bench.workflows_step import measure


def main(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench workflows")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--workerd", default=os.environ.get("WORKERD_BIN"))
    args = parser.parse_args(argv)
    return asyncio.run(measure(args.steps, args.instances, args.workerd))
