"""`python -m bench <name> [args]`: run one benchmark; its result is the last line, as JSON.

`python -m bench all` (what `make bench` runs) runs every benchmark in turn, each in
its own process, and ends with one table of their results.

Each benchmark is a module `bench/<name>.py` with `main(argv: list[str]) -> dict`.
Benchmarks measure against a baseline in the same run and report a ratio.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from typing import Any

import bench


def available() -> list[str]:
    """Modules with a `main`; the others (baselines, history builders) are their helpers."""
    names = (m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_"))
    return sorted(n for n in names
                  if callable(getattr(importlib.import_module(f"bench.{n}"), "main", None)))


def run_all() -> int:
    """Every benchmark in turn; a summary table of their last JSON lines; 1 if one failed."""
    results: dict[str, dict[str, Any] | None] = {}
    for name in available():
        print(f"== bench {name}", flush=True)
        done = subprocess.run([sys.executable, "-m", "bench", name], stdout=subprocess.PIPE,
                              text=True, check=False)
        sys.stdout.write(done.stdout)
        lines = done.stdout.strip().splitlines()
        try:
            last = json.loads(lines[-1]) if done.returncode == 0 and lines else None
        except json.JSONDecodeError:
            last = None
        results[name] = last if isinstance(last, dict) else None
    print("\n" + summary(results))
    return 0 if all(r is not None for r in results.values()) else 1


def summary(results: dict[str, dict[str, Any] | None]) -> str:
    """One row per benchmark: its scalar results (`failed` when it produced none)."""
    width = max((len(n) for n in results), default=5)
    rows = [f"{'bench':<{width}}  result", f"{'-' * width}  ------"]
    for name, result in results.items():
        if result is None:
            rows.append(f"{name:<{width}}  failed")
            continue
        cells = [f"{k}={_fmt(v)}" for k, v in sorted(result.items())
                 if isinstance(v, (int, float, str, bool))]
        rows.append(f"{name:<{width}}  {' '.join(cells)}")
    return "\n".join(rows)


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def run(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(f"usage: python -m bench <name>|all [args]; benchmarks: "
              f"{', '.join(available())}")
        return 0 if argv else 2
    if argv[0] == "all":
        return run_all()
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
