"""Durable Object hosts under faults, on the real servers: two `wdl up --only objects`
processes share one port and a storage directory; shard leases decide which one serves.

SIGKILL the owner while acknowledged writes stream in -> the other takes the shard
over (after the lease ran out), every acknowledged write is there and none is applied
twice. SIGSTOP the owner (with a call admitted, its write still to come), let another
host take over, SIGCONT -> that write is refused by the object's fence (in its SQLite
transaction) and the stale owner refuses its next call. A projection rebuild
reproduces the lease's holder and generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
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
from projections.runtime import open_backends
from services.leases import LeaseClient
from services.objects.ownership import holder_address, shard_of, shard_scope
from services.scheduler.clock import SystemClock
from services.settings import Settings
from tests.platform_stack import Stack, platform_stack

pytestmark = pytest.mark.integration

WDL = str(Path(sys.executable).with_name("wdl"))
TOKEN = "wdl-internal-test-token"
TTL_MS = 2000
NS, WORKER, CLASS = "acme", "ledger", "Ledger"

LEDGER = """
import { DurableObject } from "cloudflare:workers";
export class Ledger extends DurableObject {
  add(k) {
    const sql = this.ctx.storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS log (k INTEGER)");
    sql.exec("INSERT INTO log VALUES (?)", k);
    return sql.exec("SELECT count(*) AS c FROM log").one().c;
  }
  async addLater(k, ms) {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return this.add(k);
  }
  keys() {
    this.ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS log (k INTEGER)");
    return this.ctx.storage.sql.exec("SELECT k FROM log ORDER BY k").toArray().map((r) => r.k);
  }
}
export default { fetch() { return new Response("ledger"); } };
"""
WRANGLER = f"""name = "{WORKER}"
main = "src/index.js"
compatibility_date = "2025-11-17"

[[durable_objects.bindings]]
name = "LEDGER"
class_name = "{CLASS}"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["{CLASS}"]
"""


def object_id(name: str) -> str:
    """The id tenant/do.js makes for idFromName(name) in this binding's scope."""
    scope = f"{NS}/{WORKER}/{CLASS}"
    body = hashlib.sha256(f"wdl-do-name\0{scope}\0{name}".encode()).hexdigest()[:32]
    tag = hashlib.sha256(f"wdl-do-id\0{scope}\0{body}".encode()).hexdigest()[:32]
    return body + tag


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Host:
    def __init__(self, proc: subprocess.Popen[str], private: str) -> None:
        self.proc = proc
        self.private = private

    def signal(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)


async def start_host(stack: Stack, port: int, storage: Path) -> Host:
    env = {**stack.backend_env, "WDL_INTERNAL_TOKEN": TOKEN, "WDL_OBJECTS_DIR": str(storage),
           "WDL_OBJECTS_LEASE_TTL_MS": str(TTL_MS)}
    assert stack.platform.state is not None
    proc = subprocess.Popen(  # noqa: ASYNC220 - its output is read in an executor
        [WDL, "up", "--only", "objects", "--objects-port", str(port),
         "--state-url", stack.platform.state.url],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    loop = asyncio.get_running_loop()
    assert proc.stdout is not None
    seen: list[str] = []
    async with asyncio.timeout(60):
        while True:
            line = await loop.run_in_executor(None, proc.stdout.readline)
            if not line:
                raise AssertionError("objects host exited:\n" + "".join(seen))
            seen.append(line)
            if line.startswith("objects ") and "this host:" in line:
                private = line.split("this host: ", 1)[1].split(",", 1)[0]
                # Keep draining its output so it never blocks on a full pipe.
                loop.run_in_executor(None, lambda: [None for _ in proc.stdout])  # type: ignore[union-attr]
                return Host(proc, private)


async def call(client: httpx.AsyncClient, address: str, method: str, args: list[Any],
               forwarded: bool = False) -> httpx.Response:
    meta = {"namespace": NS, "script": WORKER, "class_name": CLASS, "id": object_id("o"),
            "name": "o"}
    # The gateway's wire format (workerd/gateway/do.js): method in a header, the
    # arguments' JSON as the body; the answer is the result's JSON (x-wdl-do-result).
    headers = {"x-wdl-internal-token": TOKEN, "x-wdl-do": json.dumps(meta),
               "x-wdl-do-method": method, "content-type": "application/json"}
    if forwarded:
        headers["x-wdl-do-forwarded"] = "1"
    return await client.post(f"http://{address}/__wdl/do/call", headers=headers,
                             content=json.dumps(args))


@pytest.fixture
async def stack(services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    async with platform_stack(services, fresh_database, unique_name, tmp_path, monkeypatch,
                              internal_token=TOKEN) as s:
        project = tmp_path / "ledger"
        (project / "src").mkdir(parents=True)
        (project / "wrangler.toml").write_text(WRANGLER)
        (project / "src" / "index.js").write_text(LEDGER)
        await s.deploy(NS, project, "--create-namespace")
        yield s


@contextlib.asynccontextmanager
async def lease_client(stack: Stack) -> AsyncIterator[LeaseClient]:
    async with open_backends(Settings.from_env(stack.backend_env)) as backends:
        yield LeaseClient(backends.log, ProjectionReader(backends.store), SystemClock(),
                          actor="test")


async def test_kill_and_pause_the_owner(stack: Stack, tmp_path: Path) -> None:
    port, storage = free_port(), tmp_path / "objects"
    scope = shard_scope(NS, WORKER, CLASS, shard_of(object_id("o")))
    hosts = [await start_host(stack, port, storage), await start_host(stack, port, storage)]
    shared = f"127.0.0.1:{port}"
    acked: list[int] = []
    try:
        async with lease_client(stack) as leases, httpx.AsyncClient(timeout=5) as client:
            async def write(k: int) -> None:
                with contextlib.suppress(httpx.HTTPError):
                    r = await call(client, shared, "add", [k])
                    if r.status_code == 200 and r.headers.get("x-wdl-do-result") == "json":
                        acked.append(k)

            for k in range(10):
                await write(k)
            assert len(acked) == 10
            first = await leases.view(scope)
            owner = next(h for h in hosts if h.private == holder_address(first.holder or ""))
            other = next(h for h in hosts if h is not owner)
            owner.signal(signal.SIGKILL)
            # Writes keep streaming in; some fail until the lease runs out and the other
            # host takes the shard.
            k = 10
            async with asyncio.timeout(30):
                while len([a for a in acked if a >= 10]) < 10:
                    await write(k)
                    k += 1
            second = await leases.view(scope)
            assert second.holder is not None and holder_address(second.holder) == other.private
            assert second.generation > first.generation
            keys = (await call(client, shared, "keys", [])).json()
            assert set(acked) <= set(keys)                 # every acknowledged write
            assert len(keys) == len(set(keys))             # none applied twice

            # A third host; pause the owner until the third one takes over.
            third = await start_host(stack, port, storage)
            hosts.append(third)
            # A call already admitted by the owner when it is paused: its write comes
            # after the takeover and must be refused by the object's fence.
            in_flight = asyncio.create_task(call(
                httpx.AsyncClient(timeout=60), other.private, "addLater", [2500, 1500],
                forwarded=True))
            await asyncio.sleep(0.5)
            other.signal(signal.SIGSTOP)
            async with asyncio.timeout(30):
                while True:
                    # Marked forwarded: until it owns the shard it refuses instead of
                    # forwarding to the paused owner.
                    r = await call(client, third.private, "add", [1000], forwarded=True)
                    if r.status_code == 200:
                        break
                    await asyncio.sleep(0.2)
            taken = await leases.view(scope)
            assert holder_address(taken.holder or "") == third.private
            assert taken.generation > second.generation
            other.signal(signal.SIGCONT)
            late = (await asyncio.wait_for(in_flight, 30)).json()
            assert "no longer owns the object" in late["error"]["message"], late
            # The stale owner's next call: refused (it does not serve, and a forwarded
            # call is not forwarded again).
            stale = await call(client, other.private, "add", [2000], forwarded=True)
            assert stale.status_code == 503 and stale.headers.get("x-wdl-do-refused") == "1"
            # Entering there without that mark reaches the current owner instead.
            via = await call(client, other.private, "add", [3000])
            assert via.status_code == 200, via.text
            keys = (await call(client, third.private, "keys", [])).json()
            assert 2000 not in keys and 2500 not in keys
            assert keys.count(1000) == 1 and keys.count(3000) == 1
            live = await leases.view(scope)
    finally:
        for h in hosts:
            with contextlib.suppress(ProcessLookupError):
                h.signal(signal.SIGCONT)
                h.signal(signal.SIGKILL)
            h.proc.wait(timeout=10)
    # The lease as a rebuild from the log alone sees it: same holder, same generation.
    settings = Settings.from_env(stack.backend_env)
    async with open_event_log(settings.event_log_url) as log, MemoryProjectionStore() as fresh:
        await rebuild(log, fresh, None, verify=False, grace_s=0)
        rebuilt = await ProjectionReader(fresh).lease(scope)
    assert rebuilt is not None
    assert (rebuilt["holder"], rebuilt["generation"]) == (live.holder, live.generation)
