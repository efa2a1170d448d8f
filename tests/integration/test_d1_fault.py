"""D1 ownership under faults, on the real servers: two `wdl up --only d1` replicas
sharing one directory of database files, leases on Kafka/Redis.

- SIGKILL the owner while acknowledged writes stream in: the other replica takes
  the lease over once it lapses, every acknowledged write is there afterwards and
  none is applied twice;
- SIGSTOP an owner, let another take over, SIGCONT it: its next write is refused
  by the fence (and not applied);
- a projection rebuild from the log reproduces the lease: holder and generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventlog.factory import open_event_log
from harness.endpoints import Endpoints
from projections.memory_store import MemoryProjectionStore
from projections.reader import ProjectionReader
from projections.rebuild import rebuild
from projections.redis_store import RedisProjectionStore
from services.settings import Settings
from tests.platform_stack import WDL, Stack, platform_stack

pytestmark = pytest.mark.integration
TOKEN = "wdl-internal-test-token"  # platform_stack's
TTL_MS = 3000
HEADERS = {"x-wdl-internal-token": TOKEN}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Replica:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            WDL, "up", "--only", "d1", "--d1-port", str(self.port), env=self.env,
            stdout=self.log.open("ab"), stderr=asyncio.subprocess.STDOUT)
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                assert self.proc.returncode is None, self.log.read_text()[-3000:]
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.url + "/healthz",
                                         headers=HEADERS)).status_code == 200:
                        return
                assert time.monotonic() < deadline, "D1 replica did not start"
                await asyncio.sleep(0.2)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
                self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def rig(services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
              tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              ) -> AsyncIterator[tuple[Stack, Callable[[], Replica]]]:
    async with platform_stack(services, fresh_database, unique_name, tmp_path,
                              monkeypatch) as stack:
        env = {**stack.backend_env, "WDL_INTERNAL_TOKEN": TOKEN,
               "WDL_D1_DIR": str(tmp_path / "d1-files"), "WDL_D1_LEASE_TTL_MS": str(TTL_MS)}
        replicas: list[Replica] = []

        def make() -> Replica:
            replica = Replica(env, tmp_path / f"replica-{len(replicas)}.log")
            replicas.append(replica)
            return replica

        try:
            yield stack, make
        finally:
            for r in replicas:
                await r.stop()


async def _query(client: httpx.AsyncClient, replica: Replica, db: str, sql: str,
                 *params: Any, direct: bool = False) -> httpx.Response:
    headers = {**HEADERS, **({"x-wdl-d1-direct": "1"} if direct else {})}
    return await client.post(f"{replica.url}/d1/acme/{db}/query", headers=headers,
                             json={"sql": sql, "params": list(params)},
                             params={"resultsFormat": "ROWS_AND_COLUMNS"})


async def _status(client: httpx.AsyncClient, replica: Replica) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(replica.url + "/status", headers=HEADERS)).json()
    return body


async def _lease(stack: Stack, db: str) -> dict[str, Any] | None:
    settings = Settings.from_env(stack.backend_env)
    assert settings.redis_url is not None
    async with RedisProjectionStore(settings.redis_url, prefix=settings.redis_prefix) as store:
        return await ProjectionReader(store).lease(f"d1:acme/{db}")


async def _setup(stack: Stack, db: str) -> None:
    await stack.wdl("ns", "create", "acme")
    await stack.wdl("d1", "create", db, "--ns", "acme")


async def test_sigkill_owner_while_writes_stream_in(
        rig: tuple[Stack, Callable[[], Replica]]) -> None:
    stack, make = rig
    await _setup(stack, "main")
    a, b = make(), make()
    await a.start()
    await b.start()
    async with httpx.AsyncClient(timeout=30) as client:
        r = await _query(client, a, "main", "CREATE TABLE w (seq INTEGER NOT NULL)")
        assert r.json()["success"], r.text
        assert "acme/main" in (await _status(client, a))["owned"]
        first = await _lease(stack, "main")
        assert first is not None and first["holder"] == (await _status(client, a))["holder"]

        acked: list[int] = []
        failed = 0
        killed_at = 0.0
        took_over_after = None
        for seq in range(400):
            if seq == 60:
                a.signal(signal.SIGKILL)  # the owner dies between two writes
                killed_at = time.monotonic()
            # Alternate the entry replica: B forwards to A while A owns the database.
            entry = a if seq % 2 == 0 and not killed_at else b
            try:
                r = await _query(client, entry, "main", "INSERT INTO w (seq) VALUES (?)", seq)
                ok = r.status_code == 200 and r.json().get("success") is True
            except httpx.HTTPError:
                ok = False
            if ok:
                acked.append(seq)
                if killed_at and took_over_after is None:
                    took_over_after = time.monotonic() - killed_at
            else:
                failed += 1
                await asyncio.sleep(0.05)
            if took_over_after is not None and len([s for s in acked if s > 60]) >= 40:
                break
            assert time.monotonic() - (killed_at or time.monotonic()) < 60, \
                "no replica took the database over"
        assert took_over_after is not None
        print(f"\nD1 takeover after SIGKILL: first acknowledged write {took_over_after:.2f} s "
              f"after the kill (lease TTL {TTL_MS} ms); {failed} writes refused meanwhile",
              file=sys.stderr)
        rows = (await _query(client, b, "main", "SELECT seq FROM w ORDER BY seq")).json()
        stored = [row[0] for row in rows["results"]["rows"]]
        assert set(acked) <= set(stored), "an acknowledged write is missing"
        assert len(stored) == len(set(stored)), "a write was applied twice"
        lease = await _lease(stack, "main")
        assert lease is not None and first is not None
        assert lease["holder"] == (await _status(client, b))["holder"]
        assert lease["generation"] == first["generation"] + 1


async def test_paused_owner_is_fenced_after_takeover_and_rebuild_reproduces_the_lease(
        rig: tuple[Stack, Callable[[], Replica]]) -> None:
    stack, make = rig
    await _setup(stack, "main")
    a, b = make(), make()
    await a.start()
    await b.start()
    async with httpx.AsyncClient(timeout=30) as client:
        r = await _query(client, a, "main", "CREATE TABLE w (seq INTEGER NOT NULL)")
        assert r.json()["success"], r.text
        old = (await _status(client, a))["owned"]["acme/main"]["generation"]
        # Only the platform reaches a replica: without the internal token, nothing runs.
        r = await client.post(f"{a.url}/d1/acme/main/query", json={"sql": "DROP TABLE w"})
        assert r.status_code == 401
        a.signal(signal.SIGSTOP)
        # Once A's lease has lapsed, a request entering B makes B the owner.
        deadline = time.monotonic() + 60
        while True:
            r = await _query(client, b, "main", "INSERT INTO w (seq) VALUES (?)", 1,
                             direct=True)
            if r.status_code == 200:
                break
            assert r.json()["code"] == "d1_unavailable", r.text
            assert time.monotonic() < deadline, "B never took over"
            await asyncio.sleep(0.2)
        new = (await _status(client, b))["owned"]["acme/main"]["generation"]
        assert new == old + 1
        a.signal(signal.SIGCONT)
        # A still believes it owns generation `old`; the fence refuses its write.
        r = await _query(client, a, "main", "INSERT INTO w (seq) VALUES (?)", 2, direct=True)
        assert r.status_code == 503 and r.json()["code"] == "d1_owner_fenced", r.text
        rows = (await _query(client, b, "main", "SELECT seq FROM w ORDER BY seq")).json()
        assert rows["results"]["rows"] == [[1]]
        # A, asked normally, now finds the owner and forwards to B.
        r = await _query(client, a, "main", "INSERT INTO w (seq) VALUES (?)", 3)
        assert r.status_code == 200 and r.json()["success"], r.text

        # An operator's takeover (an event) hands the database back to A at once.
        holder_a = (await _status(client, a))["holder"]
        await stack.wdl("lease", "takeover", "d1:acme/main", "--holder", holder_a,
                        "--ttl-ms", str(TTL_MS))
        r = await _query(client, a, "main", "INSERT INTO w (seq) VALUES (?)", 4, direct=True)
        assert r.status_code == 200 and r.json()["success"], r.text
        assert (await _status(client, a))["owned"]["acme/main"]["generation"] == new + 1
        r = await _query(client, b, "main", "INSERT INTO w (seq) VALUES (?)", 5, direct=True)
        assert r.status_code == 503 and r.json()["code"] == "d1_owner_fenced", r.text
        rows = (await _query(client, a, "main", "SELECT seq FROM w ORDER BY seq")).json()
        assert rows["results"]["rows"] == [[1], [3], [4]]

        live = await _lease(stack, "main")
        assert live is not None and live["generation"] == new + 1
    settings = Settings.from_env(stack.backend_env)
    async with open_event_log(settings.event_log_url) as log, \
            MemoryProjectionStore() as fresh:
        await rebuild(log, fresh, None, verify=False, grace_s=0)
        rebuilt = await ProjectionReader(fresh).lease("d1:acme/main")
    assert rebuilt is not None
    assert (rebuilt["holder"], rebuilt["generation"]) == (live["holder"], live["generation"])


def test_each_replica_names_its_address_in_its_holder_id() -> None:
    from services.d1.owner import holder_url
    assert holder_url(f"d1:127.0.0.1:8795:{uuid.uuid4().hex[:8]}") == "http://127.0.0.1:8795"
    assert holder_url("operator-alice") is None
