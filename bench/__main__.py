"""`python -m bench <name> [args]`: run bench.<name>.main(argv) and print its result.

The result dict is printed as ONE JSON line, last, so scripts can `tail -1`.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from collections.abc import Callable
from typing import Any


def run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m bench <name> [args...]   (e.g. python -m bench eventlog)")
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(f"bench.{name}")
    main: Callable[[list[str]], Any] = module.main
    result = main(rest)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
