"""Issue 12's "done when": a wrangler project with a D1 database and a SQLite-backed
Durable Object class with an alarm deploys unchanged (examples/guestbook) and works on
the real servers and on `wdl dev`; `wdl d1 execute` reads what the worker wrote.

The room objects keep posts in their own storage; their alarm archives them into D1,
so what `wdl d1 execute` finds was written by an alarm the platform fired.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.endpoints import ROOT, Endpoints
from tests.integration.test_dataplane_dev import Dev
from tests.platform_stack import Stack, platform_stack

pytestmark = pytest.mark.integration

PROJECT = ROOT / "examples" / "guestbook"
COMPONENTS = frozenset({"api", "projector", "state", "data", "gateway", "d1", "objects"})
ARCHIVED = "SELECT room, body FROM entries ORDER BY room, id"


@pytest.fixture
async def stack(services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    async with platform_stack(services, fresh_database, unique_name, tmp_path, monkeypatch,
                              components=COMPONENTS) as s:
        yield s


def _rows(out: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = json.loads(out)[0]["results"]
    return results


async def test_guestbook_on_the_real_servers(stack: Stack) -> None:
    ns = "guests"
    await stack.deploy(ns, PROJECT, "--create-namespace")
    applied = json.loads(await stack.wdl("d1", "migrations", "apply", "DB", "--ns", ns,
                                         "--project", str(PROJECT), "--json"))
    assert applied["applied"] == ["0001_entries.sql"]
    host = {"host": f"{ns}.workers.local"}
    async with httpx.AsyncClient(base_url=stack.gateway, headers=host, timeout=30) as web:
        for room, body in [("lobby", "hello"), ("lobby", "again"), ("attic", "dusty")]:
            r = await web.post(f"/guestbook/{room}", content=body)
            assert r.status_code == 200, r.text
        state: dict[str, Any] = {}
        for _ in range(200):  # the alarm fires ~200 ms after the first post of a room
            state = (await web.get("/guestbook/lobby")).json()
            if state["archived"] == ["hello", "again"] and not state["alarmPending"]:
                break
            await asyncio.sleep(0.1)
        assert state == {"pending": 0, "alarmPending": False, "archived": ["hello", "again"]}
        for _ in range(200):
            if (await web.get("/guestbook/attic")).json()["archived"] == ["dusty"]:
                break
            await asyncio.sleep(0.1)
    rows = _rows(await stack.wdl("d1", "execute", "guestbook-db", "--ns", ns,
                                 "--command", ARCHIVED, "--json"))
    assert rows == [{"room": "attic", "body": "dusty"}, {"room": "lobby", "body": "hello"},
                    {"room": "lobby", "body": "again"}]



def test_guestbook_on_wdl_dev(dev: Dev) -> None:
    dev.start()
    dev.cli("ns", "create", "demo")
    dev.cli("deploy", str(PROJECT), "--ns", "demo")
    dev.cli("d1", "migrations", "apply", "DB", "--ns", "demo", "--project", str(PROJECT))
    host = "demo.workers.local"
    r = httpx.post(f"http://127.0.0.1:{dev.gateway_port}/guestbook/lobby", content="hi",
                   headers={"host": host}, timeout=10)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 20
    while dev.get(host, "/guestbook/lobby").json()["archived"] != ["hi"]:
        assert time.monotonic() < deadline, dev.get(host, "/guestbook/lobby").text
        time.sleep(0.1)
    rows = _rows(dev.cli("d1", "execute", "guestbook-db", "--ns", "demo", "--command",
                         ARCHIVED, "--json"))
    assert rows == [{"room": "lobby", "body": "hi"}]
    assert dev.interrupt() == 0
