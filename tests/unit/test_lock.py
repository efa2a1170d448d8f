"""The hashed lock that `make install` installs from covers every declared dependency."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", line)
        if m:
            pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def test_every_dependency_is_pinned_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    pins = _locked()
    missing = []
    for spec in declared:
        req = Requirement(spec)
        pin = pins.get(canonicalize_name(req.name))
        # A pin outside the declared range means pyproject moved on and `make lock` was not run.
        if pin is None or not req.specifier.contains(pin, prereleases=True):
            missing.append(f"{spec} (locked: {pin})")
    assert not missing, f"run `make lock`: {missing}"
    text = (ROOT / "requirements-lock.txt").read_text()
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        if "==" in block.split("\n", 1)[0]:
            assert "--hash=sha256:" in block, block.split("\n", 1)[0]
