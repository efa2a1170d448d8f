"""The data plane end to end on the real servers and real workerd.

One platform per test (`wdl up` components in-process: control API with its
projector, state service, gateway workerd) over Kafka, Redis, PostgreSQL and
S3, driven by the real `wdl` CLI in a subprocess and real HTTP requests
through the gateway.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from harness.endpoints import Endpoints
from tests.platform_stack import HELLO, Stack, answer, platform_stack


@pytest.fixture
async def stack(services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    async with platform_stack(services, fresh_database, unique_name, tmp_path,
                              monkeypatch) as stack:
        yield stack


async def get(stack: Stack, host: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(stack.gateway + path, headers={"host": host})


async def test_hello_example_by_namespace_host_and_custom_hosts(stack: Stack) -> None:
    await stack.wdl("ns", "create", "acme")
    await stack.deploy("acme", HELLO)
    r = await get(stack, "acme.workers.local", "/hello/some/path?x=1")
    assert r.status_code == 200
    assert r.text == "Hello from WDL! You asked for /some/path\n"

    # An exact claim naming the worker: the worker sees the whole path.
    await stack.wdl("hosts", "claim", "www.acme.test", "--ns", "acme", "--worker", "hello")
    r = await get(stack, "www.acme.test", "/docs/intro")
    assert (r.status_code, r.text) == (200, "Hello from WDL! You asked for /docs/intro\n")
    # A prefix claim without a worker routes like the namespace host.
    await stack.wdl("hosts", "claim", "apps.acme.test/v1/", "--ns", "acme", "--match", "prefix")
    r = await get(stack, "apps.acme.test", "/v1/hello/x")
    assert r.status_code == 404  # the first segment after the host names the worker: "v1"
    r = await get(stack, "apps.acme.test:8080", "/v1/")
    assert r.status_code == 404 and r.json()["error"] == "worker_not_found"
    # Longest prefix wins over a shorter one naming another worker.
    await stack.deploy("acme", stack.project("api", answer("api")))
    await stack.wdl("hosts", "claim", "apps.acme.test", "--ns", "acme", "--worker", "api",
                    "--match", "prefix")
    r = await get(stack, "apps.acme.test", "/other")
    assert (r.status_code, r.text) == (200, "api /other")
    r = await get(stack, "unknown.example", "/hello/")
    assert r.status_code == 404 and r.json()["error"] == "unknown_host"


async def test_promote_is_served_by_the_very_next_request(stack: Stack) -> None:
    await stack.wdl("ns", "create", "shop")
    versions = []
    for n in range(3):
        versions.append(await stack.deploy("shop", stack.project("cart", answer(f"v{n}")),
                                           "--no-promote"))
    await stack.wdl("promote", "cart", versions[0], "--ns", "shop")
    assert (await get(stack, "shop.workers.local", "/cart/")).text == "v0 /"
    # Each acknowledged promote is visible to the next request, every time.
    for n in [1, 2, 0, 2, 1]:
        await stack.wdl("promote", "cart", versions[n], "--ns", "shop")
        assert (await get(stack, "shop.workers.local", "/cart/a")).text == f"v{n} /a"
    await stack.wdl("rollback", "cart", "--ns", "shop")
    assert (await get(stack, "shop.workers.local", "/cart/a")).text == "v2 /a"
    await stack.wdl("delete", "worker", "cart", "--ns", "shop")
    r = await get(stack, "shop.workers.local", "/cart/a")
    assert r.status_code == 404 and r.json()["error"] == "worker_not_found"
    assert "deleted" in r.json()["message"]


async def test_promote_under_steady_traffic_is_pushed_to_lease_holders(stack: Stack) -> None:
    """Under steady traffic the gateway processes serve from a freshness lease without a
    barrier round; an acknowledged promote must still be served by every request that
    starts after the acknowledgement, on every kept-alive connection, because the state
    service pushed it to every holder before the API answered."""
    await stack.wdl("ns", "create", "steady")
    versions = [await stack.deploy("steady", stack.project("feed", answer(f"s{n}")),
                                   "--no-promote") for n in range(2)]
    await stack.wdl("promote", "feed", versions[0], "--ns", "steady")
    assert stack.platform.state is not None and stack.platform.gateway is not None
    leases = stack.platform.state.leases
    stop = asyncio.Event()
    seen: list[list[tuple[float, str]]] = [[] for _ in range(4)]

    async def traffic(out: list[tuple[float, str]]) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            while not stop.is_set():
                started = time.monotonic()
                r = await client.get(stack.gateway + "/feed/",
                                     headers={"host": "steady.workers.local"})
                out.append((started, r.text))

    loops = [asyncio.create_task(traffic(out)) for out in seen]
    try:
        await asyncio.sleep(1.0)
        assert leases.holders(), "no gateway process holds a lease under steady traffic"
        pushes = leases.pushes
        for n in [1, 0, 1, 0, 1, 0]:
            await stack.wdl("promote", "feed", versions[n], "--ns", "steady")
            acked = time.monotonic()
            while not all(out and out[-1][0] > acked for out in seen):
                await asyncio.sleep(0.01)
            for out in seen:
                after = [text for started, text in out if started > acked]
                assert after and all(t == f"s{n} /" for t in after), (n, after[:5])
        async with httpx.AsyncClient(timeout=5) as client:
            health = [(await client.get(i.private_url + "/__wdl/healthz", headers={
                "x-wdl-internal-token": stack.platform.options.internal_token})).json()
                      for i in stack.platform.gateway.instances()]
        assert sum(h["leased"] for h in health) > 0, health  # requests skipped the round
        # The promotes reached the holders by push, not by waiting their leases out.
        assert leases.pushes > pushes, (leases.pushes, pushes)
        assert leases.waited_out == 0, leases.waited_out
    finally:
        stop.set()
        await asyncio.gather(*loops)


async def test_namespaces_are_isolated(stack: Stack) -> None:
    await stack.wdl("ns", "create", "alpha")
    await stack.wdl("ns", "create", "beta")
    await stack.deploy("alpha", stack.project("only-a", answer("alpha-only")))
    await stack.deploy("alpha", stack.project("same", answer("alpha-same")))
    await stack.deploy("beta", stack.project("same", answer("beta-same")))
    assert (await get(stack, "alpha.workers.local", "/only-a/")).text == "alpha-only /"
    r = await get(stack, "beta.workers.local", "/only-a/")
    assert r.status_code == 404 and r.json()["error"] == "worker_not_found"
    assert (await get(stack, "alpha.workers.local", "/same/")).text == "alpha-same /"
    assert (await get(stack, "beta.workers.local", "/same/")).text == "beta-same /"
    r = await get(stack, "gamma.workers.local", "/same/")
    assert r.status_code == 404 and r.json()["error"] == "namespace_not_found"


async def test_a_secret_reaches_env_and_no_platform_response(stack: Stack) -> None:
    secret = "s3cr3t-" + os.urandom(8).hex()
    await stack.wdl("ns", "create", "vault")
    code = ("export default { async fetch(req, env) { const u = new URL(req.url);"
            " if (u.pathname === '/check') return new Response(String("
            f"env.TOKEN === {json.dumps(secret)}));"
            " if (u.pathname === '/boom') throw new Error('failed with ' + env.TOKEN);"
            " return new Response(Object.keys(env).sort().join(',')); } };")
    await stack.deploy("vault", stack.project("keeper", code))
    await stack.wdl("secret", "put", "TOKEN", "--ns", "vault", "--worker", "keeper",
                    stdin=secret)
    assert (await get(stack, "vault.workers.local", "/keeper/check")).text == "true"
    assert (await get(stack, "vault.workers.local", "/keeper/")).text == "TOKEN"
    seen: list[str] = []
    boom = await get(stack, "vault.workers.local", "/keeper/boom")
    assert boom.status_code == 500
    seen.append(boom.text)
    for host, path in [("vault.workers.local", "/nope/"), ("vault.workers.local", "/"),
                       ("x.example", "/"), ("vault.workers.local", "/__wdl/healthz")]:
        seen.append((await get(stack, host, path)).text)
    assert stack.platform.state is not None
    async with httpx.AsyncClient() as client:
        for path in ["/healthz", "/sync?epoch=-1", "/route?ns=vault&worker=keeper", "/hosts",
                     "/resolve?host=vault.workers.local&path=/keeper/"]:
            seen.append((await client.get(stack.platform.state.url + path)).text)
    seen.append(await stack.wdl("secret", "list", "--ns", "vault", "--worker", "keeper",
                                "--json"))
    seen.append(await stack.wdl("versions", "keeper", "--ns", "vault", "--json"))
    assert all(secret not in text for text in seen)


async def test_tenant_cannot_reach_a_loopback_server(stack: Stack) -> None:
    hits: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(await reader.read(1024))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        await stack.wdl("ns", "create", "sneaky")
        code = ("export default { async fetch(req) { try {"
                f" const r = await fetch('http://127.0.0.1:{port}/steal');"
                " return new Response('reached ' + r.status); } catch (e) {"
                " return new Response('refused: ' + e.message); } } };")
        await stack.deploy("sneaky", stack.project("probe", code))
        r = await get(stack, "sneaky.workers.local", "/probe/")
        assert r.status_code == 200 and r.text.startswith("refused: ")
        # Positive control: the server is reachable from here.
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/control")).text == "hi"
    assert len(hits) == 1 and hits[0].startswith(b"GET /control")


async def test_recycling_releases_old_versions_without_failing_requests(stack: Stack) -> None:
    await stack.wdl("ns", "create", "churn")
    for n in range(3):
        await stack.deploy("churn", stack.project("busy", answer(f"r{n}")))
        assert (await get(stack, "churn.workers.local", "/busy/")).text == f"r{n} /"
    gateway = stack.platform.gateway
    assert gateway is not None
    assert await gateway.stats() == {"loaded": 3, "stale": 2}
    old_pid = gateway.pid
    statuses: list[int] = []
    stop = asyncio.Event()

    closed_idle: list[int] = []

    async def hammer() -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            while not stop.is_set():
                try:
                    r = await client.get(stack.gateway + "/busy/",
                                         headers={"host": "churn.workers.local"})
                except httpx.RemoteProtocolError:
                    # The retiring process closed this idle keep-alive connection as the
                    # request went out; HTTP lets a client retry an idempotent request then
                    # (RFC 9112 9.3.1), as browsers do. A second failure counts.
                    closed_idle.append(1)
                    r = await client.get(stack.gateway + "/busy/",
                                         headers={"host": "churn.workers.local"})
                statuses.append(r.status_code)

    clients = [asyncio.create_task(hammer()) for _ in range(4)]
    await asyncio.sleep(0.3)
    await gateway.recycle("test")
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*clients)
    assert gateway.pid != old_pid
    assert statuses and set(statuses) == {200}
    # At most one such race per client connection and retired process.
    assert len(closed_idle) <= 4 * gateway.processes
    # Each workerd process loads the active version once, on its first request.
    after = await gateway.stats()
    assert after["stale"] == 0 and 1 <= after["loaded"] <= gateway.processes
