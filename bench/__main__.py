"""`python -m bench <name> [args]`: run one benchmark; its result is the last line, as JSON.

Each benchmark is a module `bench/<name>.py` with `main(argv: list[str]) -> dict`.
Benchmarks measure against a baseline in the same run and report a ratio.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys

import bench


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__)
                  if not m.name.startswith("_"))


def run(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(f"usage: python -m bench <name> [args]; benchmarks: {', '.join(available())}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in available():
        print(f"unknown benchmark {name!r}; available: {', '.join(available())}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{name}")
    result = module.main(rest)
    sys.stdout.flush()
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
