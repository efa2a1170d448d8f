"""Dynamic Workers for tenants (`worker_loaders`) on the real servers and real workerd.

The conformance worker (tests/workers/loader_conformance.js) is deployed
unchanged as a wrangler project with `worker_loaders = [{binding = "LOADER"}]`
and runs the same calls as under Miniflare (tests/miniflare/loader_reference.mjs,
workerd's own loader); the transcripts must agree call by call except the
differences docs/compatibility.md lists, named in DOCUMENTED_DIFFERENCES (so a
new difference fails). Then what the platform adds: ids scoped to the tenant,
children's network at most the parent's egress policy, children counted against
the parent request's budget, no way to another namespace's data, `wdl dev`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.endpoints import ROOT, Endpoints
from services.dataplane.gateway import RecyclePolicy
from tests.integration.test_dataplane_dev import Dev
from tests.platform_stack import Stack, platform_stack

pytestmark = pytest.mark.integration

CONFORMANCE = ROOT / "tests" / "workers" / "loader_conformance.js"

# docs/compatibility.md, "## Dynamic Worker Loaders".
DOCUMENTED_DIFFERENCES: set[str] = {
    # workerd cannot serialize its own KV binding into a child's env; WDL's KV is a
    # platform stub, so the parent's KV works in the child (still the parent's namespace).
    "kv passthrough: child reads the parent's write",
    "kv passthrough: parent reads the child's write",
    # workerd keeps a failed callback / failed start for the id for the life of the
    # process; WDL asks the callback again (docs/loaders.md, "Failures").
    "same id after the callback threw",
    "same id after a failed start",
    # Each call through a load() stub is a fresh isolate on WDL.
    "load keeps one isolate per stub",
    # Refused by WDL before workerd sees it, with WDL's own message.
    "experimental compatibility flag",
    # WDL's shim gives a module without a default export an empty one: workerd's
    # "no fetch handler" answer instead of an internal error.
    "no default export",
}

LOADER_TOML = """
worker_loaders = [{binding = "LOADER"}]

[[kv_namespaces]]
binding = "KV"
id = "kv"
"""


@pytest.fixture(scope="module")
def miniflare_transcript() -> list[dict[str, Any]]:
    out = subprocess.run(["node", str(ROOT / "tests/miniflare/loader_reference.mjs")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    transcript: list[dict[str, Any]] = json.loads(out.stdout)
    return transcript


def loader_project(root: Path, name: str = "parent", extra: str = "") -> Path:
    """The conformance worker as a wrangler project, unchanged."""
    directory = root / f"{name}-project"
    (directory / "src").mkdir(parents=True, exist_ok=True)
    shutil.copy(CONFORMANCE, directory / "src" / "index.js")
    (directory / "wrangler.toml").write_text(
        f'name = "{name}"\nmain = "src/index.js"\ncompatibility_date = "2025-06-01"\n'
        + LOADER_TOML + extra)
    return directory


async def get(stack: Stack, ns: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.get(stack.gateway + path, headers={"host": f"{ns}.workers.local"})


async def test_conformance_scoped_ids_and_namespace_isolation(
        loopback_stack: Stack, miniflare_transcript: list[dict[str, Any]]) -> None:
    stack = loopback_stack
    await stack.wdl("ns", "create", "acme")
    await stack.wdl("ns", "create", "other")
    project = loader_project(stack.tmp)
    await stack.deploy("acme", project)  # provisions the KV namespace
    await stack.deploy("other", project)

    r = await get(stack, "acme", "/parent/")
    assert r.status_code == 200, r.text
    ours: list[dict[str, Any]] = r.json()
    assert [c["name"] for c in ours] == [c["name"] for c in miniflare_transcript]
    differing = {mine["name"] for mine, ref in zip(ours, miniflare_transcript, strict=True)
                 if mine != ref}
    unexpected = {mine["name"]: {"wdl": mine, "miniflare": ref}
                  for mine, ref in zip(ours, miniflare_transcript, strict=True)
                  if mine != ref and mine["name"] not in DOCUMENTED_DIFFERENCES}
    assert not unexpected, json.dumps(unexpected, indent=1)
    assert differing == DOCUMENTED_DIFFERENCES
    by_name = {c["name"]: c for c in ours}
    assert by_name["kv passthrough: child reads the parent's write"]["value"] == "from parent"
    assert by_name["kv passthrough: parent reads the child's write"]["value"] == "from child"
    assert by_name["same id after a failed start"]["value"] == 3
    assert "experimental or unsafe" in by_name["experimental compatibility flag"]["error"][
        "message"]

    # The same id string in two namespaces: two isolates, each with its own code. Each
    # gateway process loads a child once (the callback's tag sticks there); requests
    # spread over the processes, so a namespace may see any of its own tags, never the
    # other namespace's.
    seen: dict[str, set[str]] = {"acme": set(), "other": set()}
    for i in range(8):
        for ns in ("acme", "other"):
            text = (await get(stack, ns, f"/parent/child?id=same&tag={ns}{i}")).text
            assert text.startswith("child GET /scoped tag="), text
            seen[ns].add(text.removeprefix("child GET /scoped tag="))
    assert all(tag.startswith("acme") for tag in seen["acme"]), seen
    assert all(tag.startswith("other") for tag in seen["other"]), seen
    # Loaded once per process, not once per request.
    assert stack.platform.gateway is not None
    processes = stack.platform.gateway.processes
    assert len(seen["acme"]) <= processes and len(seen["other"]) <= processes, seen

    # The parent's KV in a child is the parent's namespace's KV.
    assert (await get(stack, "acme", "/parent/put?key=secret&value=acme-s")).text == "ok"
    assert (await get(stack, "other", "/parent/put?key=secret&value=other-s")).text == "ok"
    assert (await get(stack, "acme", "/parent/kv?key=secret")).json() == {
        "child": "acme-s", "parent": "acme-s"}
    assert (await get(stack, "other", "/parent/kv?key=secret")).json() == {
        "child": "other-s", "parent": "other-s"}

    # Forged bindings get nothing of another namespace.
    forged = (await get(stack, "acme", "/parent/forge?ns=other")).json()
    assert forged["reserved env"]["ok"] is False
    assert "__WDL are reserved" in forged["reserved env"]["error"]["message"]
    assert forged["reserved module"]["ok"] is False
    assert "__wdl/ are reserved" in forged["reserved module"]["error"]["message"]
    # Reserved prefixes in any case; every experimental flag of the pinned workerd.
    assert "__WDL are reserved" in forged["reserved env, other case"]["error"]["message"]
    assert "__wdl/ are reserved" in forged["reserved module, other case"]["error"]["message"]
    assert "experimental or unsafe" in forged["experimental flag"]["error"]["message"]
    assert "Python Workers" in forged["python flag"]["error"]["message"]
    assert forged["allowExperimental"]["ok"] is False
    assert "allowExperimental is not allowed" in forged["allowExperimental"]["error"]["message"]
    assert forged["fetcher outbound"]["ok"] is False
    plain = forged["plain object as KV"]
    assert plain["ok"] is True and plain["value"] == "[object Object]"
    assert plain["read"].startswith("error: ") and "other-s" not in json.dumps(forged)


FETCHER_PROXY = """
export default { async fetch(req) { return new Response("proxied " + new URL(req.url).host); } };
"""


async def test_child_network_is_at_most_the_parents(loopback_stack: Stack) -> None:
    stack = loopback_stack
    hits: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(await reader.read(2048))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    target = f"http://127.0.0.1:{port}/x"
    async with server:
        await stack.wdl("ns", "create", "acme")
        await stack.deploy("acme", stack.project("proxy", FETCHER_PROXY))
        await stack.deploy("acme", loader_project(
            stack.tmp, extra='\n[[services]]\nbinding = "SVC"\nservice = "proxy"\n'))
        # Default: the parent's egress policy (here public + the operators' loopback).
        assert (await get(stack, "acme", f"/parent/out?mode=default&url={target}")).text == \
            "reached 200 hi"
        assert len(hits) == 1 and b"x-wdl-request-id" not in hits[0].lower()
        text = (await get(stack, "acme",
                          "/parent/out?mode=default&url=http://169.254.169.254/")).text
        assert text.startswith("refused: ") and "egress policy of namespace acme" in text
        # null: no network at all.
        text = (await get(stack, "acme", f"/parent/out?mode=null&url={target}")).text
        assert text.startswith("refused: ") and "not permitted to access the internet" in text
        # A service binding of the parent as the child's outbound.
        assert (await get(stack, "acme", f"/parent/out?mode=service&url={target}")).text == \
            f"reached 200 proxied 127.0.0.1:{port}"
        # The parent's policy changes, the child follows on its next call (same isolate).
        await stack.wdl("ns", "egress", "set", "deny", "--ns", "acme")
        text = (await get(stack, "acme", f"/parent/out?mode=default&url={target}")).text
        assert text.startswith("refused: ") and "denies all outbound" in text
        await stack.wdl("ns", "egress", "set", "allow", "--allow", "api.example.com:443",
                        "--ns", "acme")
        text = (await get(stack, "acme", f"/parent/out?mode=default&url={target}")).text
        assert "not in the allow list" in text
        assert len(hits) == 1  # nothing connected after the first

        # Children's fetches count against the parent request's subrequest budget.
        await stack.wdl("ns", "egress", "set", "public", "--ns", "acme")
        await stack.wdl("ns", "limits", "set", "--ns", "acme", "--subrequests", "3")
        body = (await get(stack, "acme", f"/parent/outfetch?n=5&url={target}")).json()
        assert body == {"ok": 3, "error": "Too many subrequests."}
        assert (await get(stack, "acme", f"/parent/outfetch?n=2&url={target}")).json() == {
            "ok": 2, "error": ""}


async def test_a_spinning_child_holds_back_its_parents_namespace(
        services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WDL_GATEWAY_PROCESSES", "2")
    monkeypatch.setenv("WDL_HANG_TIMEOUT", "1.0")
    async with platform_stack(services, fresh_database, unique_name, tmp_path,
                              monkeypatch) as stack:
        await stack.wdl("ns", "create", "good")
        await stack.wdl("ns", "create", "bad")
        await stack.deploy("good", loader_project(stack.tmp, "calm"))
        version = await stack.deploy("bad", loader_project(stack.tmp, "parent"))
        quarantined = False
        for _ in range(8):
            try:
                async with httpx.AsyncClient(timeout=6) as client:
                    r = await client.get(stack.gateway + "/parent/spin",
                                         headers={"host": "bad.workers.local"})
                status: int | None = r.status_code
            except httpx.HTTPError:
                status = None
            if status == 503 and r.json()["error"] == "namespace_quarantined":
                quarantined = True
                break
            assert status is None or status >= 500
            await asyncio.sleep(2.0)  # the stuck process is replaced
        assert quarantined, "the namespace of a spinning child was not held back"
        listed = json.loads(await stack.wdl("quarantine", "list", "--json"))
        assert [(q["namespace"], q["worker"], q["last"]["worker"], q["last"]["version_id"])
                for q in listed] == [("bad", None, "parent", version)]
        # The other tenant's children still run.
        assert (await get(stack, "good", "/calm/child?id=x&tag=ok")).text == \
            "child GET /scoped tag=ok"


async def test_a_process_full_of_children_is_recycled(
        services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WDL_GATEWAY_PROCESSES", "1")
    # The stack's gateway with automatic recycling on, at 3 children per process.
    monkeypatch.setattr("tests.platform_stack.RecyclePolicy",
                        lambda interval=0: RecyclePolicy(interval=0.3, max_children=3))
    async with platform_stack(services, fresh_database, unique_name, tmp_path,
                              monkeypatch) as stack:
        gateway = stack.platform.gateway
        assert gateway is not None and gateway.policy.max_children == 3
        await stack.wdl("ns", "create", "acme")
        await stack.deploy("acme", loader_project(stack.tmp))
        for i in range(3):
            assert (await get(stack, "acme", f"/parent/child?id=c{i}&tag=t{i}")).text == \
                f"child GET /scoped tag=t{i}"
        deadline = time.monotonic() + 15
        while not gateway.recycles and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert [r.reason for r in gateway.recycles][:1] == ["3 dynamic Workers"]
        # The new process starts from zero children; the callback runs again there.
        assert (await get(stack, "acme", "/parent/child?id=c0&tag=again")).text == \
            "child GET /scoped tag=again"



async def test_children_past_the_old_cap_share_the_budget_fairly(
        services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One process keeping 6 children (docs/loaders.md "Limits").
    monkeypatch.setenv("WDL_GATEWAY_PROCESSES", "1")
    monkeypatch.setenv("WDL_LOADER_RESIDENT", "6")
    async with platform_stack(services, fresh_database, unique_name, tmp_path,
                              monkeypatch) as stack:
        gateway = stack.platform.gateway
        assert gateway is not None
        for ns in ("big", "small"):
            await stack.wdl("ns", "create", ns)
            await stack.deploy(ns, loader_project(stack.tmp, f"parent-{ns}"))

        async def child(ns: str, i: str, tag: str) -> str:
            r = await get(stack, ns, f"/parent-{ns}/child?id={i}&tag={tag}")
            assert r.status_code == 200, r.text
            return r.text.removeprefix("child GET /scoped tag=")

        # Past the old cap of 128 per namespace: every call works, the oldest go.
        for i in range(150):
            assert await child("big", f"b{i}", "first") == "first"
        assert await child("big", "b149", "again") == "first"  # still resident
        assert await child("big", "b0", "again") == "again"    # evicted, loaded afresh
        # Another namespace arrives: it takes its share from the one holding the most.
        for i in range(3):
            assert await child("small", f"s{i}", "s") == "s"
        for _ in range(3):
            for i in range(3):
                assert await child("small", f"s{i}", "changed") == "s"
            # The big namespace keeps loading: it evicts its own, never small's share.
            for i in range(150, 160):
                assert await child("big", f"b{i}", "first") == "first"
        # Its most recent children are resident; small's three and big's three.
        assert await child("big", "b159", "again") == "first"
        assert await child("big", "b156", "again") == "again"
        deadline = time.monotonic() + 5
        instance = gateway.instances()[0]
        while instance.child_evictions == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert instance.children == 6
        assert instance.child_loads >= 165 and instance.child_evictions >= 159
        assert gateway.registry.get_sample_value(
            "wdl_gateway_loader_resident_children", {"slot": "0"}) == 6
        # Idle for longer than workerd keeps an idle Durable Object instance (about
        # 10 s): the namespace's keeper stays alive while it holds children.
        await asyncio.sleep(15)
        assert await child("small", "s0", "changed") == "s"


def test_wdl_dev_serves_a_loader_project(dev: Dev, tmp_path: Path) -> None:
    dev.start()
    dev.cli("ns", "create", "demo")
    dev.cli("deploy", str(loader_project(tmp_path)), "--ns", "demo")
    r = dev.get("demo.workers.local", "/parent/child?id=one&tag=dev")
    assert (r.status_code, r.text) == (200, "child GET /scoped tag=dev")
    assert dev.get("demo.workers.local", "/parent/put?key=k&value=v").text == "ok"
    assert dev.get("demo.workers.local", "/parent/kv?key=k").json() == {"child": "v",
                                                                         "parent": "v"}
    assert dev.interrupt() == 0
