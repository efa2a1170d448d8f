"""workerd the binary and the process: find the pinned executable, run `workerd serve`.

`workerd_bin()` finds the native executable that `npm ci --prefix workerd` installed from
`workerd/package-lock.json`; `WorkerdProcess` is an explicit async lifecycle around
`workerd serve`: nothing happens until `start()`, which returns only once every socket it
was told about answers HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import platform
import signal
import socket
import sys
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypeAlias

ROOT = Path(__file__).resolve().parents[2]
WORKERD_DIR = ROOT / "workerd"
NODE_MODULES = WORKERD_DIR / "node_modules"
INSTALL_HINT = "npm ci --prefix workerd"

# --------------------------------------------------------------------------------------------
# Binary


class WorkerdNotInstalled(RuntimeError):
    pass


def _platform_package() -> str:
    """Name of the npm package that ships the native binary for this machine."""
    system = platform.system().lower()
    machine = platform.machine().lower()
    arch = {"x86_64": "64", "amd64": "64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    os_name = {"linux": "linux", "darwin": "darwin", "windows": "windows"}.get(system)
    if arch is None or os_name is None or (os_name == "windows" and arch != "64"):
        raise WorkerdNotInstalled(f"workerd has no npm build for {system}/{machine}")
    return f"@cloudflare/workerd-{os_name}-{arch}"


def workerd_bin(node_modules: Path = NODE_MODULES) -> Path:
    """The native workerd executable installed from `workerd/package-lock.json`.

    Prefers the platform package's binary (always the real executable) over the `workerd`
    package's `bin/workerd` (a copy or a launcher, depending on whether its postinstall ran).
    """
    exe = "workerd.exe" if platform.system() == "Windows" else "workerd"
    candidates = [
        node_modules / _platform_package() / "bin" / exe,
        node_modules / "workerd" / "bin" / exe,
    ]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path.resolve()
    tried = ", ".join(str(p) for p in candidates)
    raise WorkerdNotInstalled(
        f"workerd is not installed (looked for {tried}); run `{INSTALL_HINT}` "
        f"from the repository root"
    )


def pinned_version(package_json: Path = WORKERD_DIR / "package.json") -> str:
    """The exact `workerd` npm version pinned in `workerd/package.json`."""
    data = json.loads(package_json.read_text())
    version = data["dependencies"]["workerd"]
    if not isinstance(version, str):
        raise ValueError(f"{package_json}: dependencies.workerd is not a string")
    return version



# --------------------------------------------------------------------------------------------
# Process

Address: TypeAlias = tuple[str, int]


class WorkerdStartError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral port that was free a moment ago (prefer `listening_socket` to avoid races)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def listening_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A bound, listening TCP socket to hand to workerd with `socket_fds` (no port race)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(128)
        s.set_inheritable(True)
    except BaseException:
        s.close()
        raise
    return s


def main_thread_syscalls(pid: int) -> int | None:
    """Read and write syscalls the process's main thread made so far (None: not Linux, or
    gone). An event loop stuck in JS makes none; an overloaded one makes many, so a
    watchdog that sees them move knows a late probe answer is load, not a hang."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/io").read_text(encoding="ascii")
    except OSError:
        return None
    fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    return int(fields.get("syscr", 0)) + int(fields.get("syscw", 0))


PROBE_TIMEOUT = 1.0  # seconds one readiness probe may take
PUMP_CHUNK = 64 * 1024  # bytes read from workerd's stdout at a time
MAX_LINE = 16 * 1024  # bytes of one output line kept (a tenant's console.log may be huge)


async def http_answers(addr: Address, path: str = "/") -> bool:
    """True when `addr` accepts a TCP connection and answers `GET path` with an HTTP status
    line (any status: a 500 from the worker still proves workerd is serving)."""
    host, port = addr
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
                writer.write(request.encode())
                await writer.drain()
                status = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError):
        return False
    return status.startswith(b"HTTP/1.")


@dataclass
class _Output:
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=2000))

    def add(self, line: bytes, truncated: bool) -> None:
        text = line.decode("utf-8", "replace")
        self.lines.append(text + " [... truncated]" if truncated else text)

    def text(self, last: int | None = None) -> str:
        lines = list(self.lines)
        return "\n".join(lines if last is None else lines[-last:])


def _die_with_parent() -> Callable[[], None] | None:
    """For the child: SIGKILL when this process dies (Linux), else None.

    A supervisor that is SIGKILLed (or OOM-killed) runs no cleanup; without
    this its workerd children would keep serving the ports and holding tenant
    state. Resolved before the fork: the child only calls into libc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def child() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return child


_PR_SET_PDEATHSIG = 1


class WorkerdProcess:
    """`workerd serve [--experimental] <config> [const]` with an explicit async lifecycle.

    `ready` lists HTTP addresses that must answer `GET ready_path` before `start()` returns;
    sockets passed in `socket_fds` (socket name -> listening socket) are handed over with
    `--socket-fd` and waited for too (only those named in `ready_sockets`, when given: a
    socket shared with other processes may hand the probe to one of them). The caller keeps
    ownership of those socket objects.

    Note: workerd drops the connection without any response when the handler fails with a
    "disconnected" error (e.g. a service binding to an external server that is down), so point
    `ready_path` at a route that does not depend on other services.
    """

    def __init__(
        self,
        config_path: Path,
        *,
        experimental: bool = True,
        binary: Path | str | None = None,
        const_name: str | None = None,
        ready: Sequence[Address] = (),
        ready_path: str = "/",
        socket_fds: Mapping[str, socket.socket] | None = None,
        ready_sockets: Collection[str] | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.config_path = Path(config_path)
        self.experimental = experimental
        self._binary = Path(binary) if binary is not None else None
        self.const_name = const_name
        self.socket_fds = dict(socket_fds or {})
        self.ready = list(ready)
        self.ready_path = ready_path
        for name, sock in self.socket_fds.items():
            if ready_sockets is not None and name not in ready_sockets:
                continue
            host, port = sock.getsockname()[:2]
            self.ready.append(("127.0.0.1" if host in ("0.0.0.0", "") else host, port))
        self.extra_args = list(extra_args)
        self.env = dict(env) if env is not None else None
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self._output = _Output()

    @property
    def binary(self) -> Path:
        return self._binary if self._binary is not None else workerd_bin()

    def argv(self) -> list[str]:
        args = [str(self.binary), "serve"]
        if self.experimental:
            args.append("--experimental")
        for name, sock in self.socket_fds.items():
            args += ["--socket-fd", f"{name}={sock.fileno()}"]
        args += self.extra_args
        args.append(str(self.config_path))
        if self.const_name is not None:
            args.append(self.const_name)
        return args

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def output(self) -> str:
        """workerd's recent stdout+stderr (includes `console.log` of workers)."""
        return self._output.text()

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        # Chunks, not readline(): a tenant's console.log is one line of any length, and
        # readline() raises past its buffer limit - the pipe would then go undrained,
        # workerd would block writing to it and every tenant of the process would hang.
        # A line is kept up to MAX_LINE bytes; the rest of it is dropped, never buffered.
        partial = bytearray()
        dropped = False
        while chunk := await stream.read(PUMP_CHUNK):
            lines = chunk.split(b"\n")
            for i, piece in enumerate(lines):
                room = MAX_LINE - len(partial)
                if len(piece) > room:
                    piece, dropped = piece[:max(room, 0)], True
                partial += piece
                if i < len(lines) - 1:
                    self._output.add(bytes(partial), dropped)
                    partial.clear()
                    dropped = False
        if partial:
            self._output.add(bytes(partial), dropped)

    async def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("workerd already started")
        argv = self.argv()
        self._proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            pass_fds=[s.fileno() for s in self.socket_fds.values()],
            env=self.env,
            preexec_fn=_die_with_parent(),
            # What workerd writes (Durable Objects' SQLite files) is the platform's user's.
            umask=0o077,
        )
        assert self._proc.stdout is not None
        self._drain = asyncio.create_task(self._pump(self._proc.stdout))
        try:
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(self) -> None:
        assert self._proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.startup_timeout
        pending = list(self.ready)
        exit_wait = asyncio.ensure_future(self._proc.wait())
        try:
            while pending:
                if exit_wait.done():
                    await self._settle_output()
                    raise WorkerdStartError(
                        f"workerd exited with status {self._proc.returncode} before serving "
                        f"{pending}:\n{self._output.text(last=60)}"
                    )
                if loop.time() > deadline:
                    raise WorkerdStartError(
                        f"workerd did not answer HTTP on {pending} within "
                        f"{self.startup_timeout}s:\n{self._output.text(last=60)}"
                    )
                if await http_answers(pending[0], self.ready_path):
                    pending.pop(0)
                    continue
                # Poll again soon, but wake immediately if the process dies.
                await asyncio.wait({exit_wait}, timeout=0.02)
        finally:
            if not exit_wait.done():
                exit_wait.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await exit_wait

    async def _settle_output(self) -> None:
        if self._drain is not None:
            # Whatever became of the drain, the process is stopped all the same (a stop
            # that raised here would leave the watchdog's slot empty for good).
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._drain), timeout=1.0)

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    async def kill(self) -> int | None:
        """SIGKILL now: for a process whose event loop is stuck (it would not act on SIGTERM)."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        return await self.stop()

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after `stop_timeout`. Returns the exit status. Idempotent."""
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=self.stop_timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        await self._settle_output()
        if self._drain is not None and not self._drain.done():
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
        return proc.returncode

    async def __aenter__(self) -> WorkerdProcess:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
