"""A test fixture project's npm dependencies, installed once per lockfile."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from harness.endpoints import ROOT


def node_modules(fixture: Path, label: str) -> Path:
    """`npm ci` of `fixture`'s lockfile into .wdl/npm/<label>-<digest> (gitignored), once;
    later calls (and runs) reuse it. The install happens in a staging directory renamed
    into place, so a killed install leaves only its staging behind, never half a tree."""
    digest = hashlib.sha256((fixture / "package-lock.json").read_bytes()).hexdigest()[:16]
    cache = ROOT / ".wdl" / "npm" / f"{label}-{digest}"
    if (cache / "node_modules" / ".package-lock.json").is_file():
        return cache / "node_modules"
    staging = cache.with_name(cache.name + f".staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy(fixture / name, staging / name)
    done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=staging,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"npm ci failed:\n{done.stderr[-3000:]}"
    shutil.rmtree(cache, ignore_errors=True)
    staging.rename(cache)
    return cache / "node_modules"
