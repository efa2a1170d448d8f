"""What the pinned workerd accepts as a compatibility date and flags, checked before a
version is written.

workerd decides a worker's date and flags when it loads it: a flag it does not know, an
experimental one (the data plane runs with `--experimental`, which tenants must not
inherit) or a date past its own makes every request of the version fail. The control
API asks this module first, so such a version is refused with a clear error and never
reaches the log. The rules and messages are workerd's own
(`src/workerd/io/compatibility-date.c++`, Cloudflare's validation mode), the flag table
is read from the pinned binary into `workerd/compatibility-flags.json` by
`python -m harness.compat_flags` and checked against the binary by the tests.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

FLAGS_FILE = Path(__file__).resolve().parent.parent / "workerd" / "compatibility-flags.json"


class CompatibilityError(ValueError):
    """A date or flag the pinned runtime would refuse; `code` is stable, `message` is
    workerd's wording."""

    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Flag:
    field: str
    enable: str | None
    disable: str | None
    date: str | None
    experimental: bool

    @property
    def unsupported(self) -> bool:
        """Python Workers: enabling them makes workerd fetch Python packages from the
        network while it loads the worker, outside any egress policy; WDL runs none."""
        return self.field.startswith("python")


def refused_flags() -> dict[str, list[str]]:
    """Enable names tenants may not use, by why: loader.js gets them for dynamic Workers
    (services/dataplane/config.py) as the control API refuses them for versions."""
    flags = pinned_runtime().flags
    return {"experimental": sorted(f.enable for f in flags if f.experimental and f.enable),
            "unsupported": sorted(f.enable for f in flags if f.unsupported and f.enable
                                  and not f.experimental)}


@dataclass(frozen=True)
class Runtime:
    workerd: str
    max_date: str
    flags: tuple[Flag, ...]

    @property
    def by_name(self) -> dict[str, tuple[Flag, bool]]:
        """Flag name -> (the flag, True for its enable name)."""
        out: dict[str, tuple[Flag, bool]] = {}
        for flag in self.flags:
            if flag.enable:
                out[flag.enable] = (flag, True)
            if flag.disable:
                out[flag.disable] = (flag, False)
        return out


@cache
def pinned_runtime() -> Runtime:
    doc = json.loads(FLAGS_FILE.read_text(encoding="utf-8"))
    return Runtime(workerd=doc["workerd"], max_date=doc["max_compatibility_date"],
                   flags=tuple(Flag(**f) for f in doc["flags"]))


@cache
def _names() -> dict[str, tuple[Flag, bool]]:
    return pinned_runtime().by_name


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def check_compatibility(date: str, flags: Iterable[str], *,
          today: Callable[[], dt.date] = _today) -> None:
    """Raise CompatibilityError for the first thing workerd would refuse; `date` is
    already a YYYY-MM-DD calendar date (eventlog.validation checks the shape)."""
    runtime = pinned_runtime()
    if date > runtime.max_date:
        raise CompatibilityError(
            "compatibility_date_unsupported", "compatibility_date",
            f'This Worker requires compatibility date "{date}", but the newest date '
            f'supported by this platform\'s workerd ({runtime.workerd}) is '
            f'"{runtime.max_date}".')
    now = today().isoformat()
    if date > now:
        raise CompatibilityError(
            "compatibility_date_in_future", "compatibility_date",
            f"Can't set compatibility date in the future: {date}. Today's date (UTC) is "
            f"{now}.")
    names = _names()
    enabled: dict[str, str] = {}
    disabled: dict[str, str] = {}
    for name in flags:
        known = names.get(name)
        if known is None:
            raise CompatibilityError("unknown_compatibility_flag", "compatibility_flags",
                                     f"No such compatibility flag: {name}")
        flag, enables = known
        if enables and flag.experimental:
            raise CompatibilityError(
                "experimental_compatibility_flag", "compatibility_flags",
                f"The compatibility flag {name} is experimental and cannot be used in "
                "Workers deployed to WDL.")
        if enables and flag.unsupported:
            raise CompatibilityError(
                "unsupported_compatibility_flag", "compatibility_flags",
                f"The compatibility flag {name} is for Python Workers, which WDL does not "
                "run.")
        (enabled if enables else disabled)[flag.field] = name
        if flag.field in enabled and flag.field in disabled:
            raise CompatibilityError(
                "contradictory_compatibility_flags", "compatibility_flags",
                "Compatibility flags are mutually contradictory: "
                f"{enabled[flag.field]} vs {disabled[flag.field]}")
