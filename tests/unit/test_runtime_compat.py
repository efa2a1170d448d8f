"""The pinned runtime's compatibility table (workerd/compatibility-flags.json) matches the
pinned workerd binary, and the control API's check refuses what workerd would."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from harness.compat_flags import binary_date, extract, generate, render
from services.dataplane.workerd_process import pinned_version, workerd_bin
from services.runtime_compat import (
    FLAGS_FILE,
    CompatibilityError,
    check_compatibility,
    pinned_runtime,
    refused_flags,
)

pytestmark = pytest.mark.unit


def test_the_committed_table_is_the_pinned_binarys() -> None:
    # Stale after a workerd bump: run `python -m harness.compat_flags` and commit.
    assert FLAGS_FILE.read_text() == render(generate())


def test_the_table_names_the_pin_and_its_date() -> None:
    runtime = pinned_runtime()
    assert runtime.workerd == pinned_version()
    assert runtime.max_date == binary_date(workerd_bin())
    names = [n for f in runtime.flags for n in (f.enable, f.disable) if n]
    assert len(names) == len(set(names)), "a flag name appears twice"
    by_name = runtime.by_name
    assert by_name["nodejs_compat"][0].experimental is False
    assert by_name["experimental"][0].experimental is True
    assert by_name["formdata_parser_supports_files"][0].date == "2021-11-03"


def test_the_decoder_refuses_what_it_does_not_understand() -> None:
    with pytest.raises(Exception, match="schema node"):
        extract(b"\x00" * 4096)


def today(day: str) -> dt.date:
    return dt.date.fromisoformat(day)


@pytest.mark.parametrize(("date", "flags"), [
    ("2025-11-17", []),
    ("2025-11-17", ["nodejs_compat"]),
    ("2021-01-01", ["nodejs_compat", "formdata_parser_converts_files_to_strings"]),
    ("2026-11-17", []),                                          # the runtime's own date
])
def test_what_workerd_accepts_passes(date: str, flags: list[str]) -> None:
    check_compatibility(date, flags, today=lambda: today("2026-12-07"))


@pytest.mark.parametrize(("date", "flags", "code", "message"), [
    ("2025-11-17", ["no_such_flag"], "unknown_compatibility_flag",
     "No such compatibility flag: no_such_flag"),
    ("2025-11-17", ["experimental"], "experimental_compatibility_flag",
     "The compatibility flag experimental is experimental and cannot be used in Workers "
     "deployed to WDL."),
    ("2025-11-17", ["unsafe_module"], "experimental_compatibility_flag", "unsafe_module"),
    ("2025-11-17", ["nodejs_compat", "no_nodejs_compat"], "contradictory_compatibility_flags",
     "Compatibility flags are mutually contradictory: nodejs_compat vs no_nodejs_compat"),
    ("2026-11-18", [], "compatibility_date_unsupported",
     'This Worker requires compatibility date "2026-11-18", but the newest date supported '
     "by this platform's workerd"),
    ("2026-11-10", [], "compatibility_date_in_future",
     "Can't set compatibility date in the future: 2026-11-10. Today's date (UTC) is "
     "2026-11-09."),
])
def test_what_workerd_refuses_is_refused_with_its_words(
        date: str, flags: list[str], code: str, message: str) -> None:
    with pytest.raises(CompatibilityError) as caught:
        check_compatibility(date, flags, today=lambda: today("2026-11-09"))
    assert caught.value.code == code
    assert message in caught.value.message


def test_a_disable_flag_of_an_experimental_feature_is_allowed() -> None:
    # workerd refuses only the *enable* flag of an experimental feature.
    doc = json.loads(FLAGS_FILE.read_text())
    disables = [f["disable"] for f in doc["flags"] if f["experimental"] and f["disable"]]
    for name in disables:
        check_compatibility("2025-11-17", [name], today=lambda: today("2026-12-07"))


def test_python_workers_are_refused_but_may_be_switched_off() -> None:
    for name in ("python_workers", "python_workflows", "python_workers_20250116"):
        with pytest.raises(CompatibilityError) as refused:
            check_compatibility("2025-11-17", [name])
        assert refused.value.code == "unsupported_compatibility_flag"
    check_compatibility("2025-11-17", ["no_python_workers_20250116"])
    assert "python_workers" in refused_flags()["unsupported"]
    assert not set(refused_flags()["unsupported"]) & set(refused_flags()["experimental"])
