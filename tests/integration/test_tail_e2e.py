"""Live tail end to end: real workerd (its `tails` of dynamic workers), the data
service's hub, the control API's proxy and the real `wdl tail`.

A worker logs with console.log and throws; `wdl tail` shows the line and the
exception; filters apply; a token of another namespace is refused; and a
tenant cannot make its events appear under another worker.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.platform_stack import WDL, Stack

pytestmark = pytest.mark.integration

BEARER = {"authorization": "Bearer wdl-internal-test-token"}  # platform_stack's token

APP = """
export default { async fetch(req) {
  const u = new URL(req.url);
  console.log("tail-marker", u.pathname, { n: 1 });
  if (u.pathname === "/boom") throw new TypeError("kaboom-from-tenant");
  if (u.pathname === "/big") console.log("x".repeat(100000));
  return new Response("ok " + u.pathname);
} };
"""

# Tries every way a tenant could claim to be someone else: a forged log line, a
# forged trace post to the data service, odd headers.
SPOOF = """
export default { async fetch(req, env) {
  console.log(JSON.stringify({ namespace: "%(victim_ns)s", worker: "victim" }));
  let posted;
  try {
    const r = await fetch("%(data)s/tail", { method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ events: [{ namespace: "%(victim_ns)s", worker: "victim",
                                        outcome: "ok", kind: "fetch", logs: [] }] }) });
    posted = "status " + r.status;
  } catch (e) { posted = "refused: " + e.message; }
  return new Response(posted, { headers: { "x-wdl-namespace": "%(victim_ns)s" } });
} };
"""

VICTIM = """
export default { async fetch(req) { console.log("victim-line"); return new Response("v"); } };
"""


class Tail:
    """`wdl tail …` as a subprocess, its stdout and stderr collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.out = ""
        self.err = ""
        self._readers = [asyncio.create_task(self._read("out")),
                         asyncio.create_task(self._read("err"))]

    @classmethod
    async def start(cls, stack: Stack, *args: str, env: dict[str, str] | None = None) -> Tail:
        proc = await asyncio.create_subprocess_exec(
            WDL, "tail", *args, env={**stack.env, **(env or {})},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        return cls(proc)

    async def _read(self, which: str) -> None:
        stream = self.proc.stdout if which == "out" else self.proc.stderr
        assert stream is not None
        while chunk := await stream.read(4096):
            setattr(self, which, getattr(self, which) + chunk.decode())

    async def until(self, check: Callable[[Tail], bool], what: str,
                    timeout: float = 20.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not check(self):
            if self.proc.returncode is not None or \
                    asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"waiting for {what}; exit {self.proc.returncode}\n"
                                     f"stdout:\n{self.out}\nstderr:\n{self.err}")
            await asyncio.sleep(0.05)

    async def connected(self) -> None:
        await self.until(lambda t: "tailing " in t.err, "the tail to connect")

    async def finish(self, *, interrupt: bool = True) -> int:
        """Ctrl-C, as a user would (or wait for it to exit on its own); the exit code."""
        if interrupt and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(self.proc.wait(), 20)
        await asyncio.gather(*self._readers)
        return code

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


@pytest.fixture
def stack(loopback_stack: Stack) -> Stack:
    # Loopback egress allowed: the spoofing tenant may even reach the data service.
    return loopback_stack


async def get(stack: Stack, ns: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=15) as client:
        return await client.get(stack.gateway + path, headers={"host": f"{ns}.workers.local"})


HEAD = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ GET http://\S+/hello\?q=1 200 ok \d+ms$",
                  re.M)


async def test_wdl_tail_shows_console_lines_and_exceptions(
        stack: Stack, unique_name: Callable[[str], str]) -> None:
    ns, other = unique_name("tl"), unique_name("to")
    await stack.wdl("ns", "create", ns)
    await stack.wdl("ns", "create", other)
    version = await stack.deploy(ns, stack.project("app", APP))

    tail = await Tail.start(stack, "app", "--ns", ns)
    await tail.connected()
    assert (await get(stack, ns, "/app/hello?q=1")).text == "ok /hello"
    assert (await get(stack, ns, "/app/boom")).status_code == 500
    await tail.until(lambda t: "kaboom-from-tenant" in t.out and "/boom" in t.out,
                     "the exception")
    assert await tail.finish() == 0, tail.err
    assert HEAD.search(tail.out), tail.out
    assert '  [log] tail-marker /hello {"n": 1}' in tail.out
    assert re.search(r"GET http://\S+/boom - exception \d+ms", tail.out), tail.out
    assert "  ! TypeError: kaboom-from-tenant" in tail.out
    assert re.search(r"^      at .*index\.js", tail.out, re.M), tail.out  # the stack

    # json + filters, applied by the server: only the failed invocation comes through,
    # and a huge console line arrives truncated to the per-event budget.
    tail = await Tail.start(stack, "app", "--ns", ns, "--format", "json", "--status", "error")
    await tail.connected()
    for path in ("/app/hello", "/app/big", "/app/boom"):
        await get(stack, ns, path)
    await tail.until(lambda t: "kaboom-from-tenant" in t.out, "the filtered exception")
    assert await tail.finish() == 0
    events = tail.events()
    assert [e["outcome"] for e in events] == ["exception"], events
    (boom,) = events
    assert (boom["namespace"], boom["worker"], boom["version"]) == (ns, "app", version)
    assert boom["kind"] == "fetch" and boom["status"] is None
    assert boom["exceptions"][0]["name"] == "TypeError"  # type: ignore[index]

    tail = await Tail.start(stack, "app", "--ns", ns, "--format", "json", "--search", "/BIG")
    await tail.connected()
    for path in ("/app/hello", "/app/big"):
        await get(stack, ns, path)
    await tail.until(lambda t: '"/big"' in t.out, "the searched event")
    assert await tail.finish() == 0
    (big,) = tail.events()
    assert big["truncated"] is True
    assert len(json.dumps(big["logs"])) < 17 * 1024, "one event is bounded to ~16 KiB"

    # A token of another namespace learns nothing, not even that `ns` exists.
    issued = json.loads(await stack.wdl("tokens", "issue", "--role", "observer",
                                        "--namespace", other, "--json"))
    tail = await Tail.start(stack, "app", "--ns", ns, env={"WDL_TOKEN": issued["token"]})
    assert await tail.finish(interrupt=False) == 1
    assert f"namespace_not_found: namespace '{ns}' not found" in tail.err, tail.err
    # ... while an observer of `ns` may tail it.
    issued = json.loads(await stack.wdl("tokens", "issue", "--role", "observer",
                                        "--namespace", ns, "--json"))
    tail = await Tail.start(stack, "app", "--ns", ns, env={"WDL_TOKEN": issued["token"]})
    await tail.connected()
    assert await tail.finish() == 0


async def test_tenants_cannot_choose_whom_their_events_belong_to(
        stack: Stack, unique_name: Callable[[str], str]) -> None:
    ns, victim_ns = unique_name("ts"), unique_name("tv")
    await stack.wdl("ns", "create", ns)
    await stack.wdl("ns", "create", victim_ns)
    data = stack.platform.data
    assert data is not None
    await stack.deploy(victim_ns, stack.project("victim", VICTIM))
    await stack.deploy(ns, stack.project("spoof", SPOOF % {"victim_ns": victim_ns,
                                                           "data": data.url}))

    victim = await Tail.start(stack, "victim", "--ns", victim_ns, "--format", "json")
    spoof = await Tail.start(stack, "spoof", "--ns", ns, "--format", "json")
    await victim.connected()
    await spoof.connected()
    answer = (await get(stack, ns, "/spoof/")).text
    assert answer == "status 401", answer  # the data service wants the internal token
    await spoof.until(lambda t: "victim" in t.out, "the spoofing tenant's own event")
    await get(stack, victim_ns, "/victim/")  # the victim's own event, after the spoof's
    await victim.until(lambda t: "victim-line" in t.out, "the victim's event")
    assert await victim.finish() == 0 and await spoof.finish() == 0
    (own,) = spoof.events()
    assert (own["namespace"], own["worker"]) == (ns, "spoof")
    assert [(e["namespace"], e["worker"]) for e in victim.events()] == [(victim_ns, "victim")]

    # Per-worker metrics are the gateway's own counts, attributed the same way; they
    # arrive with its next flush (about once a second).
    text = await metrics_until(data.url, lambda t: metric(
        t, "wdl_worker_request_duration_seconds_count", namespace=victim_ns,
        worker="victim", default=0) >= 1)
    assert metric(text, "wdl_worker_requests_total", namespace=ns, worker="spoof",
                  status_class="2xx", outcome="ok") == 1
    assert metric(text, "wdl_worker_request_duration_seconds_count", namespace=victim_ns,
                  worker="victim") == 1


async def metrics_until(url: str, check: Callable[[str], bool], timeout: float = 15.0) -> str:
    """The data service's /metrics text once `check` holds (bounded wait)."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            text = (await client.get(url + "/metrics", headers=BEARER)).text
            if check(text):
                return text
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"metrics did not arrive:\n{text[-3000:]}")
            await asyncio.sleep(0.1)


def metric(text: str, name: str, default: float | None = None, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    if default is not None:
        return default
    raise AssertionError(f"no sample {name}{labels}")


async def test_tail_consumers_only_while_someone_tails(
        stack: Stack, unique_name: Callable[[str], str]) -> None:
    ns = unique_name("td")
    await stack.wdl("ns", "create", ns)
    await stack.deploy(ns, stack.project("app", APP))
    state, data = stack.platform.state, stack.platform.data
    assert state is not None and data is not None

    async def route() -> dict[str, object]:
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.get(state.url + "/route", params={"ns": ns, "worker": "app"},
                                 headers=BEARER)
        return dict(r.json()["route"])

    def received(text: str) -> float:
        return metric(text, "wdl_tail_events_total", default=0)

    def requests(text: str) -> float:
        return metric(text, "wdl_worker_requests_total", namespace=ns, worker="app",
                      status_class="2xx", outcome="ok", default=0)

    async def untraced() -> None:
        # A request of a worker nobody tails: counted (the gateway's flush), never traced.
        text = await metrics_until(data.url, lambda t: requests(t) >= 0)
        events, served = received(text), requests(text)
        assert (await get(stack, ns, "/app/quiet")).text == "ok /quiet"
        text = await metrics_until(data.url, lambda t: requests(t) >= served + 1)
        assert received(text) == events, "an event of a worker nobody tails was posted"

    # Nobody tails it: loaded without a tail consumer, under the untailed id.
    plain = await route()
    assert "tail" not in plain and not str(plain["id"]).endswith(":t"), plain
    await untraced()

    # `connected` means the state service has it: the very next request is traced,
    # in an isolate of its own.
    tail = await Tail.start(stack, "app", "--ns", ns, "--format", "json")
    await tail.connected()
    tailed = await route()
    assert tailed["tail"] is True and tailed["id"] == f"{plain['id']}:t", tailed
    assert (await get(stack, ns, "/app/first")).text == "ok /first"
    await tail.until(lambda t: "/first" in t.out, "the first request")
    assert await tail.finish() == 0
    assert str(tail.events()[0]["url"]).endswith("/first"), tail.out

    # Stopped: the route goes back to the untailed isolate, and tracing stops.
    deadline = asyncio.get_running_loop().time() + 15
    while "tail" in await route():
        assert asyncio.get_running_loop().time() < deadline, "the tail never ended"
        await asyncio.sleep(0.05)
    assert (await route())["id"] == plain["id"]
    await untraced()
