"""`python -m bench dataplane`: throughput and latency of the workerd data plane.

One run, on the embedded backends in a temporary directory (the data path is
gateway -> state service -> projection, the same code as on Redis):

* `gateway_rps`: wrk through the gateway to a dynamically loaded tenant worker;
* `baseline_rps`: the same wrk against bare workerd serving that worker statically;
* `two_isolate_rps`: the **two-isolate floor** - bare workerd where a static worker
  forwards each request to a second static worker through a service binding (what
  any gateway that runs tenants in their own isolate must at least pay), run as
  `gateway_processes` workerd processes on the gateway's listening layout,
  measured in two halves around the gateway's run so drift falls on both;
  `ratio_floor` = gateway_rps / two_isolate_rps; `two_isolate_1proc_rps` is the same
  floor with one process (for comparison with `baseline_rps`, also one process);
* `cold_load_p50_ms`: first request to never-seen versions (route miss, bundle
  fetch, isolate load), one worker each;
* `promote_to_served_p99_ms`: promote acknowledged by the control API -> first
  response from the new version (polling from the ack on);
* `watchdog_cost`: 1 - throughput with the watchdog running / paused (same run,
  interleaved); the gateway runs `gateway_processes` workerd processes;
* `warm_request_p50_ms` / `two_isolate_warm_p50_ms`: one request at a time (the
  same client) through the gateway and through the floor; `warm_over_floor_ms` the
  difference;
* `gateway_rps` is measured with nobody tailing the worker (so without tail consumers:
  services/state/tails.py); `gateway_tailed_rps` / `ratio_floor_tailed` the same while
  one live tail subscription of it is open (its events read and counted:
  `tailed_events`), same processes;
* plus a recycle's duration and the wrk parameters.

Needs `wrk` (Debian: `apt-get install wrk`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.embedded import embedded, wrk_parser
from harness.workerd import (
    Config,
    EsModule,
    ServiceBinding,
    ServiceRef,
    Socket,
    Worker,
    WorkerdProcess,
    listening_socket,
    write_config,
)
from services.dataplane.listeners import SlotListeners
from services.platform import Platform

TOKEN = "wdl_admin_bench"
HOST = "bench.workers.local"


def tenant_source(marker: str) -> str:
    return ("export default { async fetch(req) { return new Response("
            f"'hello world {marker}\\n'); }} }};")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wrk_binary() -> str:
    """wrk from PATH; when missing and running as root on Debian, `apt-get install` it once."""
    binary = shutil.which("wrk")
    if binary is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "wrk"]
        if subprocess.run(install, env=env, capture_output=True, check=False).returncode:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True,
                           check=False)
            subprocess.run(install, env=env, capture_output=True, check=False)
        binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (Debian)")
    return binary


async def wrk(url: str, host: str, *, seconds: int, connections: int, threads: int) -> float:
    binary = wrk_binary()
    proc = await asyncio.create_subprocess_exec(
        binary, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-H", f"Host: {host}", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    text = out.decode()
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if proc.returncode != 0 or bad:
        async with httpx.AsyncClient(timeout=10, headers={"host": host}) as client:
            sample = await client.get(url)
        raise RuntimeError(f"wrk failed or got errors:\n{text}{err.decode()}\n"
                           f"a request now: {sample.status_code} {sample.text[:500]}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if found is None:
        raise RuntimeError(f"unexpected wrk output:\n{text}")
    return float(found.group(1))


class Api:
    def __init__(self, client: httpx.AsyncClient, ns: str) -> None:
        self.client = client
        self.ns = ns

    async def upload(self, worker: str, source: str, *, promote: bool) -> float:
        """Upload (and maybe promote) a version; returns the monotonic time of the ack."""
        body = {"main_module": "index.js", "compatibility_date": "2025-06-01",
                "modules": [{"name": "index.js", "type": "esm",
                             "content_b64": base64.b64encode(source.encode()).decode()}]}
        r = await self.client.post(f"/v1/namespaces/{self.ns}/workers/{worker}/versions",
                                   json=body, params={"promote": str(promote).lower()})
        r.raise_for_status()
        return time.perf_counter()


async def baseline(source: str, args: argparse.Namespace, work: Path) -> float:
    config = Config(services=[Worker("tenant", [EsModule("index.js", source)], "2025-06-01")],
                    sockets=[Socket("http", ServiceRef("tenant"))])
    path = write_config(config, work / "baseline.capnp")
    with listening_socket("127.0.0.1", 0) as sock:
        async with WorkerdProcess(path, socket_fds={"http": sock}, binary=args.workerd):
            url = f"http://127.0.0.1:{sock.getsockname()[1]}/hello/"
            await wrk(url, HOST, seconds=2, connections=args.connections, threads=args.threads)
            return await wrk(url, HOST, seconds=args.seconds, connections=args.connections,
                             threads=args.threads)


FRONT = "export default { fetch(request, env) { return env.BACK.fetch(request); } };"


class Floor:
    """The two-isolate floor: front worker -> service binding -> back worker, as
    `processes` workerd processes on the gateway's listening layout (one socket each
    in a steered SO_REUSEPORT group: listeners.py), so the comparison differs only in
    what the gateway does."""

    def __init__(self, source: str, args: argparse.Namespace, work: Path,
                 processes: int) -> None:
        config = Config(
            services=[Worker("front", [EsModule("front.js", FRONT)], "2025-06-01",
                             bindings=[ServiceBinding("BACK", ServiceRef("back"))]),
                      Worker("back", [EsModule("index.js", source)], "2025-06-01")],
            sockets=[Socket("http", ServiceRef("front"))])
        self.path = write_config(config, work / f"floor-{processes}.capnp")
        self.args = args
        self.processes = processes
        self._stack = contextlib.AsyncExitStack()
        self.url = ""

    async def __aenter__(self) -> Floor:
        listeners = SlotListeners("127.0.0.1", 0, self.processes)
        listeners.open()
        self._stack.callback(listeners.close)
        for slot in range(self.processes):
            await self._stack.enter_async_context(
                WorkerdProcess(self.path, socket_fds={"http": listeners.socket_for(slot)},
                               binary=self.args.workerd))
        self.url = f"http://127.0.0.1:{listeners.address[1]}/hello/"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def rps(self, seconds: int) -> float:
        a = self.args
        return await wrk(self.url, HOST, seconds=seconds, connections=a.connections,
                         threads=a.threads)


class Tailing:
    """One live tail subscription of bench/hello on the data service, read in the
    background; `connected` has been seen when the block starts."""

    def __init__(self, data_url: str, token: str) -> None:
        self.data_url = data_url
        self.token = token
        self.events = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Tailing:
        connected = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._read(connected))
        await asyncio.wait_for(connected, 10)
        return self

    async def _read(self, connected: asyncio.Future[None]) -> None:
        async with httpx.AsyncClient(timeout=None) as c, c.stream(
                "GET", self.data_url + "/tail/stream?namespace=bench&worker=hello",
                headers={"x-wdl-internal-token": self.token}) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():
                if '"type":"connected"' in line and not connected.done():
                    connected.set_result(None)
                elif '"type":"event"' in line:
                    self.events += 1

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def warm_p50(web: httpx.AsyncClient, url: str, count: int = 200) -> float:
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        (await web.get(url)).raise_for_status()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wdl-bench-") as tmp:
        work = Path(tmp)
        settings, options = embedded(work, TOKEN, args.workerd)
        async with Platform(settings, options) as platform, httpx.AsyncClient(
                base_url=platform.api.url if platform.api else "", timeout=30,
                headers={"authorization": f"Bearer {TOKEN}"}) as client, \
                httpx.AsyncClient(timeout=30, headers={"host": HOST}) as web:
            assert platform.gateway is not None
            gw = platform.gateway.url
            (await client.post("/v1/namespaces", json={"name": "bench"})).raise_for_status()
            api = Api(client, "bench")

            # Throughput: gateway -> dynamically loaded worker, between two halves of
            # the floor (same number of processes on one socket).
            await api.upload("hello", tenant_source("v0"), promote=True)
            processes = platform.gateway.processes
            async with Floor(tenant_source("v0"), args, work, processes) as floor:
                await floor.rps(2)
                floor_rps = await floor.rps(max(2, args.seconds // 2))
                await wrk(gw + "/hello/", HOST, seconds=2, connections=args.connections,
                          threads=args.threads)
                gateway_rps = await wrk(gw + "/hello/", HOST, seconds=args.seconds,
                                        connections=args.connections, threads=args.threads)
                # The same while someone tails it: tail consumers from the next request on.
                assert platform.data is not None
                async with Tailing(platform.data.url, options.internal_token) as tailing:
                    await wrk(gw + "/hello/", HOST, seconds=2, connections=args.connections,
                              threads=args.threads)
                    tailed_rps = await wrk(gw + "/hello/", HOST, seconds=args.seconds,
                                           connections=args.connections, threads=args.threads)
                await wrk(gw + "/hello/", HOST, seconds=1, connections=args.connections,
                          threads=args.threads)
                floor_rps = (floor_rps + await floor.rps(max(2, args.seconds // 2))) / 2
                # Warm latency, one request at a time, interleaved in blocks.
                floor_warm = gw_warm = 0.0
                for _ in range(2):
                    floor_warm += await warm_p50(web, floor.url) / 2
                    gw_warm += await warm_p50(web, gw + "/hello/") / 2
            async with Floor(tenant_source("v0"), args, work, 1) as floor1:
                await floor1.rps(2)
                floor1_rps = await floor1.rps(args.seconds)
            # The watchdog's cost: the same load with it paused and running, interleaved
            # (two rounds each) so drift of the machine falls on both sides.
            with_dog = without_dog = 0.0
            for _ in range(2):
                await platform.gateway.set_watchdog(False)
                without_dog += await wrk(gw + "/hello/", HOST, seconds=max(2, args.seconds // 2),
                                         connections=args.connections, threads=args.threads)
                await platform.gateway.set_watchdog(True)
                with_dog += await wrk(gw + "/hello/", HOST, seconds=max(2, args.seconds // 2),
                                      connections=args.connections, threads=args.threads)
            # Cold loads: one never-seen version per worker, first request timed.
            for i in range(args.samples):
                await api.upload(f"cold-{i}", tenant_source(f"cold{i}"), promote=True)
            cold = []
            for i in range(args.samples):
                t0 = time.perf_counter()
                r = await web.get(f"{gw}/cold-{i}/")
                cold.append((time.perf_counter() - t0) * 1000)
                assert r.text == f"hello world cold{i}\n", r.text

            # Promote acknowledged -> first response from the new version.
            promote = []
            for i in range(args.samples):
                marker = f"p{i}"
                acked = await api.upload("hello", tenant_source(marker), promote=True)
                polls = 0
                while True:
                    polls += 1
                    r = await web.get(gw + "/hello/")
                    if r.text == f"hello world {marker}\n":
                        break
                promote.append((time.perf_counter() - acked) * 1000)
                if polls != 1:
                    raise RuntimeError(f"read-your-writes broken: {polls} requests after the ack")

            stats = await platform.gateway.stats()
            report = await platform.gateway.recycle("bench")

        base = await baseline(tenant_source("v0"), args, work)
    return {
        "gateway_rps": round(gateway_rps, 1),
        "baseline_rps": round(base, 1),
        "ratio": round(gateway_rps / base, 3),
        "two_isolate_rps": round(floor_rps, 1),
        "ratio_floor": round(gateway_rps / floor_rps, 3),
        "two_isolate_1proc_rps": round(floor1_rps, 1),
        "gateway_processes": processes,
        "gateway_tailed_rps": round(tailed_rps, 1),
        "ratio_floor_tailed": round(tailed_rps / floor_rps, 3),
        "tailed_events": tailing.events,
        "watchdog_on_rps": round(with_dog / 2, 1),
        "watchdog_off_rps": round(without_dog / 2, 1),
        "watchdog_cost": round(1 - with_dog / without_dog, 4),
        "cold_load_p50_ms": round(statistics.median(cold), 2),
        "cold_load_p99_ms": round(percentile(cold, 0.99), 2),
        "promote_to_served_p50_ms": round(statistics.median(promote), 2),
        "promote_to_served_p99_ms": round(percentile(promote, 0.99), 2),
        "warm_request_p50_ms": round(gw_warm, 3),
        "two_isolate_warm_p50_ms": round(floor_warm, 3),
        "warm_over_floor_ms": round(gw_warm - floor_warm, 3),
        "recycle_ms": round(report.seconds * 1000, 1),
        "isolates_before_recycle": stats,
        "wrk": {"threads": args.threads, "connections": args.connections,
                "seconds": args.seconds},
        "samples": args.samples,
    }


def main(argv: list[str]) -> dict[str, Any]:
    parser = wrk_parser("python -m bench dataplane", samples=40)
    return asyncio.run(run(parser.parse_args(argv)))
