"""Run control-plane processes (API replicas, a projector) as subprocesses.

For integration tests, benchmarks and local tooling: each process gets its
own environment and a log file, and is stopped with SIGTERM (then SIGKILL).
Nothing starts at import or construction time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ManagedProcess:
    def __init__(self, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.args = args
        self.env = dict(env)
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self._proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class ApiProcess(ManagedProcess):
    """`python -m services.api` on a free loopback port."""

    def __init__(self, env: Mapping[str, str], log_path: Path, *, port: int | None = None,
                 projector: bool = False) -> None:
        self.port = port or free_port()
        flag = "--projector" if projector else "--no-projector"
        super().__init__([sys.executable, "-m", "services.api", "--host", "127.0.0.1",
                          "--port", str(self.port), flag], env, log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        super().start()
        self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"API process exited; log:\n{self.log_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"API not ready after {timeout}s; log:\n{self.log_text()[-3000:]}")


class ProjectorProcess(ManagedProcess):
    """`python -m projections`: one live projector replica."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        super().__init__([sys.executable, "-m", "projections"], env, log_path)


def stack_env(base: Mapping[str, str], *, topic: str, partitions: int, redis_prefix: str,
              database_url: str, bucket: str, admin_token: str, root_keys: str,
              ) -> dict[str, str]:
    """Environment of API and projector processes sharing one set of backends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WDL_")}
    env.update(base)
    env.update({
        "WDL_TOPIC": topic, "WDL_PARTITIONS": str(partitions),
        "WDL_REDIS_PREFIX": redis_prefix, "DATABASE_URL": database_url,
        "WDL_BLOB_URL": f"s3://{bucket}", "WDL_ADMIN_TOKEN": admin_token,
        "WDL_ROOT_KEYS": root_keys, "WDL_PROJECTOR_GROUP": "",
        "PYTHONUNBUFFERED": "1",
    })
    return env


class ControlStack:
    """A projector plus N API replicas over the same backends (see `stack_env`)."""

    def __init__(self, env: Mapping[str, str], workdir: Path, *, api_replicas: int = 1) -> None:
        self.env = dict(env)
        self.workdir = workdir
        self.apis = [ApiProcess(self.env, workdir / f"api-{i}.log")
                     for i in range(api_replicas)]
        self.projector = ProjectorProcess(self.env, workdir / "projector.log")

    @property
    def url(self) -> str:
        return self.apis[0].url

    @property
    def admin_token(self) -> str:
        return self.env["WDL_ADMIN_TOKEN"]

    def start(self) -> None:
        try:
            self.apis[0].start()  # creates the topic before anyone reads it
            self.projector.start()
            for api in self.apis[1:]:
                api.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for api in self.apis:
            api.stop()
        self.projector.stop()

    def logs(self) -> str:
        return "\n".join(p.log_text() for p in [*self.apis, self.projector])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
