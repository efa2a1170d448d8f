"""`wdl` tables keep ids, names and times whole at any width; every listing has --json.

Each listing command runs through the real Typer app against a canned control API
and renders into a 40-column console (a narrow terminal); a pipe gets unbounded lines.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
import typer.main
from rich.console import Console
from typer.testing import CliRunner

from cli import common
from cli.common import table, when
from cli.main import app

pytestmark = pytest.mark.unit

MS = 1_764_636_142_000  # 2025-12-02 00:42:22 UTC
TIME = when(MS)
V1, V2 = "01JF8SNHZXPE6Q4W3R2T1Y0ABC", "01JF8SQ9M2K7D5VB4N3C8X6ZYW"
TOKEN = "01JF8STB6W0QG2H5N9R3K1M7PA"
ACTOR = "token:bootstrap-admin-01JF8STB6W"
LONG_WORKER = "a-worker-with-a-rather-long-name"
D1_ID = "6d0f7a3c-1b2e-4c5d-8e9f-0a1b2c3d4e5f"

# path pattern -> the API's answer
ANSWERS: list[tuple[str, Any]] = [
    (r"/workers$", [{"name": LONG_WORKER, "active_version": V1, "previous_version": V2,
                     "versions": 2, "deleted": False, "updated_at": MS}]),
    (r"/versions$", [{"version_id": V1, "active": True, "deleted": False, "uploaded_at": MS,
                      "uploaded_by": ACTOR, "bundle_sha256": "ab" * 32}]),
    (r"/secrets$", [{"name": "API_TOKEN_FOR_THE_UPSTREAM", "key_id": "root-2026-01",
                     "updated_at": MS}]),
    (r"/hosts$", [{"pattern": "*.customers.example.test", "match": "suffix",
                   "worker": LONG_WORKER}]),
    (r"^/v1/leases$", [{"scope": "scheduler:partition-0", "holder": f"replica-{V2}",
                        "generation": 7, "expires_at": MS, "released": False}]),
    (r"^/v1/audit$", {"items": [{"occurred_at_ms": MS, "type": "worker.version_promoted",
                                 "namespace": "demo", "worker": LONG_WORKER, "actor": ACTOR,
                                 "accepted": False, "code": "version_not_found"}],
                      "next_cursor": None}),
    (r"^/v1/tokens$", [{"token_id": TOKEN, "role": "deployer", "namespaces": ["demo"],
                        "label": "the CI pipeline of the demo team", "issued_at": MS,
                        "revoked_at": MS}]),
    (r"^/v1/namespaces$", [{"name": "a-namespace-with-a-long-name", "description":
                            "what it is for, in a sentence or two", "created_at": MS}]),
    (r"/cron-runs$", [{"slot_ms": MS, "cron": "*/5 * * * *", "status": "error",
                       "duration_ms": 12, "version_id": V1, "holder": f"replica-{V2}",
                       "error": "TypeError: x is not a function"}]),
    (r"/grants$", [{"namespace": "a-namespace-with-a-long-name", "worker": LONG_WORKER}]),
    (r"/kv/[^/]+/keys$", {"keys": [{"name": f"user:{V1}", "expiration": MS // 1000,
                                     "metadata": {"plan": "pro"}}], "list_complete": True}),
    (r"/kv$", [{"name": "cache-of-the-session-store", "created_at": MS, "created_by": ACTOR}]),
    (r"/r2/[^/]+/objects$", {"objects": [{"key": f"reports/2026/{V1}.json", "size": 1234,
                                          "etag": "d41d8cd98f00b204e9800998ecf8427e",
                                          "uploaded": MS}],
                             "delimitedPrefixes": [], "truncated": False}),
    (r"/r2$", [{"name": "bucket-of-uploaded-reports", "created_at": MS, "created_by": ACTOR}]),
    (r"/d1/[^/]+/backups$", [{"backup_id": "b-0123456789abcdef", "size": 4096,
                              "created_at": MS, "created_by": ACTOR}]),
    (r"/d1/[^/]+/migrations$", [{"id": 1, "name": "0001_a-rather-long-migration-name.sql",
                                 "applied_at": "2025-12-02 00:42:22"}]),
    (r"/hyperdrive$", [{"name": "orders-database-of-the-shop", "id": "9f" * 16,
                        "origin": {"host": "db.internal.example", "port": 5432,
                                   "database": "orders"}, "created_at": MS}]),
    (r"/d1$", [{"name": "database-of-the-session-store", "database_id": D1_ID,
                "migrations": [], "created_at": MS, "created_by": ACTOR}]),
    (r"/queues/[^/]+/messages$", {"messages": [{"id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                                          "timestamp": MS, "attempts": 1,
                                          "content_type": "json", "size": 123}]}),
    (r"/queues$", [{"name": "queue-of-the-nightly-reports", "delivery_delay": 0,
                     "created_at": MS, "created_by": ACTOR,
                     "consumer": {"worker": LONG_WORKER,
                                  "dead_letter_queue": "dead-letters-of-the-reports"}}]),
    (r"/workflows$", [{"workflow": "orders-of-the-nightly-batch", "worker": LONG_WORKER,
                        "class_name": "OrderFlow", "instances": 3,
                        "by_status": {"complete": 2, "waiting": 1}}]),
    (r"/instances$", [{"id": f"order-{V1}", "status": "waiting", "version": V1, "steps": 4,
                       "created_at": MS, "updated_at": MS}]),
    (r"/quarantine$", [{"namespace": "demo", "worker": LONG_WORKER, "version_id": V1,
                        "reason": "hung", "strikes": 3, "at": MS,
                        "detail": "stopped answering during three barrier rounds in a row"},
                       {"namespace": "a-namespace-with-a-long-name", "worker": None,
                        "version_id": None, "reason": "hang", "strikes": 3, "at": MS,
                        "detail": "no answer to the watchdog probe for 1.5 s"}]),
    (r"^/v1/strikes$", [{"namespace": "demo", "strikes": 2,
                         "at": [MS, MS], "window_s": 600, "hold_after": 3, "held": False,
                         "last": {"worker": LONG_WORKER, "reason": "hang", "at": MS}}]),
]

# command line -> values that must appear whole on one line
LISTINGS: list[tuple[list[str], list[str]]] = [
    (["workers"], [LONG_WORKER, V1, V2, TIME]),
    (["versions", "w"], [V1, ACTOR, TIME]),
    (["secret", "list"], ["API_TOKEN_FOR_THE_UPSTREAM", "root-2026-01", TIME]),
    (["hosts", "list"], ["*.customers.example.test", LONG_WORKER]),
    (["lease", "show"], ["scheduler:partition-0", f"replica-{V2}", TIME]),
    (["audit"], ["worker.version_promoted", LONG_WORKER, ACTOR, "version_not_found", TIME]),
    (["tokens", "list"], [TOKEN, TIME]),
    (["ns", "list"], ["a-namespace-with-a-long-name", TIME]),
    (["cron", "runs", "w"], [TIME, "*/5 * * * *", V1, f"replica-{V2}"]),
    (["ns", "grants"], ["a-namespace-with-a-long-name", LONG_WORKER]),
    (["kv", "key", "list", "-k", "cache"], [f"user:{V1}"]),
    (["kv", "namespace", "list"], ["cache-of-the-session-store", ACTOR, TIME]),
    (["r2", "object", "list", "files"], [f"reports/2026/{V1}.json",
                                         "d41d8cd98f00b204e9800998ecf8427e", TIME]),
    (["r2", "bucket", "list"], ["bucket-of-uploaded-reports", ACTOR, TIME]),
    (["quarantine", "list"], [f"demo/{LONG_WORKER}", V1, "a-namespace-with-a-long-name/*",
                              "(every version)"]),
    (["quarantine", "strikes"], ["demo", "2/3 in 600 s",
                                 LONG_WORKER, TIME]),
    (["workflows", "list"], ["orders-of-the-nightly-batch", LONG_WORKER]),
    (["workflows", "instances", "orders"], [f"order-{V1}", V1, TIME]),
    (["queues", "list"], ["queue-of-the-nightly-reports", LONG_WORKER,
                            "dead-letters-of-the-reports", TIME]),
    (["queues", "dlq", "list", "jobs-dlq"], ["0f1e2d3c4b5a69788796a5b4c3d2e1f0", TIME]),
    (["d1", "list"], ["database-of-the-session-store", D1_ID, ACTOR, TIME]),
    (["hyperdrive", "list"], ["orders-database-of-the-shop", "9f" * 16,
                              "db.internal.example:5432/orders", TIME]),
    (["d1", "backups", "main"], ["b-0123456789abcdef", ACTOR, TIME]),
    (["d1", "migrations", "list", "main"], ["0001_a-rather-long-migration-name.sql",
                                             "2025-12-02 00:42:22"]),
]

BOX = re.compile(r"[\u2500-\u257f\s]")


class FakeClient:
    def __init__(self, config: Any) -> None:
        self.config = config

    def get(self, path: str, **params: Any) -> Any:
        for pattern, answer in ANSWERS:
            if re.search(pattern, path):
                return answer
        raise AssertionError(f"unexpected GET {path}")

    def close(self) -> None:
        pass


def _lines(text: str) -> list[str]:
    return [BOX.sub("", line) for line in text.splitlines()]


def _assert_whole(text: str, values: list[str]) -> None:
    assert "…" not in text
    lines = _lines(text)
    for value in values:
        squeezed = BOX.sub("", value)
        assert any(squeezed in line for line in lines), f"{value!r} cut in:\n{text}"


@pytest.mark.parametrize(("argv", "values"), LISTINGS, ids=[" ".join(a) for a, _ in LISTINGS])
@pytest.mark.parametrize("width", [40, 80, 200])
def test_listings_keep_values_whole(monkeypatch: pytest.MonkeyPatch, argv: list[str],
                                    values: list[str], width: int) -> None:
    out = StringIO()
    console = Console(width=width, file=out, color_system=None)
    monkeypatch.setattr(common, "ControlClient", FakeClient)
    monkeypatch.setattr(common, "stdout_console", lambda: console)
    command = _command(argv)
    assert command is not None, f"wdl {' '.join(argv)} is not a command"
    scoped = ["--ns", "demo"] if "--ns" in _options(command) else []
    result = CliRunner().invoke(app, [*argv, *scoped, "--url", "http://control.test",
                                      "--token", "t"])
    assert result.exit_code == 0, result.output
    _assert_whole(out.getvalue(), values)


def test_a_table_that_fits_stays_a_table() -> None:
    out = StringIO()
    table([{"id": V1, "at": MS}], [("id", "id"), ("at", "time")], {"at": when},
          console=Console(width=80, file=out))
    assert "┃ id" in out.getvalue()
    _assert_whole(out.getvalue(), [V1, TIME])


def test_too_wide_becomes_records_with_whole_values() -> None:
    out = StringIO()
    rows = [{"id": V1, "by": ACTOR, "at": MS}, {"id": V2, "by": ACTOR, "at": MS}]
    table(rows, [("id", "id"), ("by", "by"), ("at", "time")], {"at": when},
          console=Console(width=40, file=out))
    text = out.getvalue()
    assert "┃" not in text
    assert f"id    {V1}" in text and f"id    {V2}" in text
    _assert_whole(text, [V1, V2, ACTOR, TIME])


def test_prose_wraps_but_ids_do_not() -> None:
    out = StringIO()
    words = "a label long enough that it has to wrap over several lines"
    table([{"id": V1, "label": words}], [("id", "id"), ("label", "label")],
          console=Console(width=50, file=out))
    text = out.getvalue()
    assert "┃" in text  # still a table: only the prose column gave way
    _assert_whole(text, [V1])
    assert len(text.splitlines()) > 5  # it did wrap: 3 header lines, the row, the bottom


def test_a_pipe_gets_unbounded_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    console = common.stdout_console()
    assert console.is_terminal or console.width >= 10_000


def _walk(command: Any, path: list[str]) -> Iterator[tuple[str, Any]]:
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _walk(sub, [*path, name])
    else:
        yield " ".join(path), command


COMMANDS = dict(_walk(typer.main.get_command(app), []))
LISTING_NAMES = {"list", "show", "runs", "grants", "workers", "versions", "audit", "status",
                 "verify", "dead-letters", "whoami", "doctor", "head"}


def _command(argv: list[str]) -> Any:
    return next((COMMANDS[" ".join(argv[:i])] for i in range(len(argv), 0, -1)
                 if " ".join(argv[:i]) in COMMANDS), None)


def _options(command: Any) -> set[str]:
    return {o for p in command.params for o in getattr(p, "opts", [])}


def test_every_listing_command_has_json() -> None:
    listing = {name: cmd for name, cmd in COMMANDS.items()
               if name.split()[-1] in LISTING_NAMES
               or (cmd.callback and "table(" in inspect.getsource(cmd.callback))}
    assert len(listing) >= 20, sorted(listing)
    missing = sorted(name for name, cmd in listing.items() if "--json" not in _options(cmd))
    assert not missing, f"listing commands without --json: {missing}"


def test_every_table_listing_is_exercised_here() -> None:
    tabled = {name for name, cmd in COMMANDS.items()
              if cmd.callback and "table(" in inspect.getsource(cmd.callback)
              and not name.startswith("projections")}
    exercised = {name for name, cmd in COMMANDS.items()
                 for argv, _ in LISTINGS if _command(argv) is cmd}
    assert tabled <= exercised, sorted(tabled - exercised)
