"""`wdl dev` from scratch: a fresh data dir, the hello example deployed with the CLI,
served through the gateway, and still served after Ctrl-C and a restart."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from harness.endpoints import ROOT
from harness.workerd import free_port

WDL = str(Path(sys.executable).with_name("wdl"))


class Dev:
    def __init__(self, data_dir: Path, workerd_bin: str) -> None:
        self.api_port, self.gateway_port = free_port(), free_port()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("WDL_") and k not in (
                        "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")}
        self.env.update({"WDL_DATA_DIR": str(data_dir), "WORKERD_BIN": workerd_bin,
                         "PYTHONUNBUFFERED": "1"})
        self.log = data_dir.parent / "dev.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.groups: list[int] = []  # process groups started (wdl dev and its workerds)

    def start(self) -> None:
        seen = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [WDL, "dev", "--api-port", str(self.api_port),
                 "--gateway-port", str(self.gateway_port)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                start_new_session=True)
        self.groups.append(self.proc.pid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            if b"ready; Ctrl-C stops" in self.log.read_bytes()[seen:]:
                return
            time.sleep(0.1)
        raise AssertionError(f"wdl dev did not start:\n{self.log.read_text()[-3000:]}")

    def interrupt(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=30)
        self.proc = None
        return code

    def kill(self) -> None:
        # The whole group: a SIGKILLed `wdl dev` cannot stop its workerd processes, which
        # would otherwise outlive the test (holding memory and sockets) for the whole run.
        for group in self.groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        self.groups.clear()
        if self.proc is not None:
            self.proc.wait()

    def workerd_pids(self) -> list[int]:
        """The gateway's workerd processes (children of `wdl dev` serving its configs)."""
        assert self.proc is not None
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid and b"wdl-gateway-" in cmdline and b" Z " not in \
                    stat.encode():
                found.append(int(entry.name))
        return found

    def cli(self, *args: str, stdin: str | None = None) -> str:
        token = (Path(self.env["WDL_DATA_DIR"]) / "admin.token").read_text().strip()
        env = {**self.env, "WDL_CONTROL_URL": f"http://127.0.0.1:{self.api_port}",
               "WDL_TOKEN": token, "WDL_CONFIG": str(Path(self.env["WDL_DATA_DIR"]) / "x.toml")}
        done = subprocess.run([WDL, *args], env=env, input=stdin, capture_output=True,
                              text=True, timeout=120, cwd=ROOT)
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    def get(self, host: str, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.gateway_port}{path}",
                         headers={"host": host}, timeout=10)



def test_wdl_dev_serves_the_hello_example_and_survives_a_restart(dev: Dev) -> None:
    dev.start()
    token_file = Path(dev.env["WDL_DATA_DIR"]) / "admin.token"
    assert token_file.stat().st_mode & 0o077 == 0
    assert token_file.read_text().strip() in dev.log.read_text()  # printed for the user
    dev.cli("ns", "create", "demo")
    dev.cli("deploy", str(ROOT / "examples" / "hello"), "--ns", "demo")
    r = dev.get("demo.workers.local", "/hello/there")
    assert (r.status_code, r.text) == (200, "Hello from WDL! You asked for /there\n")
    dev.cli("deploy", str(ROOT / "examples" / "greeter"), "--ns", "demo")
    dev.cli("secret", "put", "API_TOKEN", "--ns", "demo", "--worker", "greeter",
            stdin="dev-token")
    assert dev.get("demo.workers.local", "/greeter/?at=work").text == "Howdy from Berlin!\n"
    assert dev.interrupt() == 0
    log = dev.log.read_text()
    assert "stopping" in log and "Traceback" not in log

    dev.start()
    r = dev.get("demo.workers.local", "/hello/again")
    assert (r.status_code, r.text) == (200, "Hello from WDL! You asked for /again\n")
    r = httpx.get(f"http://127.0.0.1:{dev.gateway_port}/greeter/whoami", timeout=10,
                  headers={"host": "demo.workers.local", "authorization": "Bearer dev-token"})
    assert r.json() == {"authorized": True, "secretConfigured": True}
    assert dev.interrupt() == 0


def test_wdl_dev_runs_the_bindings_example_and_keeps_its_data(dev: Dev) -> None:
    dev.start()
    dev.cli("ns", "create", "demo")
    dev.cli("deploy", str(ROOT / "examples" / "hello"), "--ns", "demo")
    out = dev.cli("deploy", str(ROOT / "examples" / "bindings"), "--ns", "demo", "--json")
    assert json.loads(out)["version_id"]
    assert [k["name"] for k in json.loads(dev.cli("kv", "namespace", "list", "--ns", "demo",
                                                  "--json"))] == ["example-cache"]
    assert dev.get("demo.workers.local", "/bindings/counter").json()["counter"] == 1
    assert dev.get("demo.workers.local", "/bindings/counter").json()["counter"] == 2
    put = httpx.put(f"http://127.0.0.1:{dev.gateway_port}/bindings/files/notes/a.txt",
                    content=b"hello r2", timeout=10,
                    headers={"host": "demo.workers.local", "content-type": "text/x-note"})
    assert put.status_code == 200 and put.json()["size"] == 8
    r = dev.get("demo.workers.local", "/bindings/hello")
    assert (r.status_code, r.text) == (200, "Hello from WDL! You asked for /from-bindings\n")
    r = dev.get("demo.workers.local", "/bindings/fetch?url=http://127.0.0.1:1/")
    assert r.status_code == 502 and "egress policy of namespace demo" in r.text
    assert dev.interrupt() == 0

    dev.start()  # tenant data is on disk under the data dir, not in the process
    assert dev.get("demo.workers.local", "/bindings/counter").json()["counter"] == 3
    r = dev.get("demo.workers.local", "/bindings/files/notes/a.txt")
    assert (r.status_code, r.text, r.headers["content-type"]) == (200, "hello r2",
                                                                  "text/x-note")
    assert "hello r2" in dev.cli("r2", "object", "get", "example-files/notes/a.txt",
                                 "--ns", "demo", "--pipe")
    assert dev.cli("kv", "key", "get", "counter", "--namespace-id", "example-cache",
                   "--ns", "demo").strip() == "3"
    assert dev.interrupt() == 0


def test_wdl_dev_stops_on_ctrl_c_while_a_tenant_spins(dev: Dev, tmp_path: Path) -> None:
    # The hang budget is longer than the stop bound: the stop must not wait for the
    # watchdog, whatever state workerd is in.
    dev.env["WDL_HANG_TIMEOUT"] = "30"
    dev.start()
    dev.cli("ns", "create", "loop")
    project = tmp_path / "spin"
    (project / "src").mkdir(parents=True)
    (project / "wrangler.toml").write_text(
        'name = "spin"\nmain = "src/index.js"\ncompatibility_date = "2025-06-01"\n')
    (project / "src" / "index.js").write_text(
        "export default { async fetch() { while (true) {} } };")
    dev.cli("deploy", str(project), "--ns", "loop")
    spinning = [subprocess.Popen(  # one stuck request per workerd process, at least
        ["curl", "-s", "-m", "20", "-H", "host: loop.workers.local",
         f"http://127.0.0.1:{dev.gateway_port}/spin/"]) for _ in range(4)]
    time.sleep(1.0)
    started = time.monotonic()
    code = dev.interrupt()
    took = time.monotonic() - started
    for p in spinning:
        p.kill()
        p.wait()
    assert code == 0
    assert took <= 5.0, f"wdl dev took {took:.1f}s to stop on Ctrl-C"
