"""workerd for WDL: find the pinned binary, render Cap'n Proto configs, run the process.

The config model is a small, typed subset of `src/workerd/server/workerd.capnp` (the schema is
also embedded in the binary): sockets, worker services made of inline modules, bindings
(text/json/data/service/workerLoader/fromEnvironment), `external` HTTP servers and `network`
services. `render_config()` turns it into the text format that `workerd serve` reads.

`WorkerdProcess` is an explicit async lifecycle around `workerd serve`: nothing happens until
`start()`, which returns only once every socket it was told about answers HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypeAlias

ROOT = Path(__file__).resolve().parent.parent
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
# Config model (a subset of workerd.capnp)

JsonValue: TypeAlias = (
    bool | int | float | str | Sequence["JsonValue"] | Mapping[str, "JsonValue"] | None
)


@dataclass(frozen=True)
class EsModule:
    name: str
    source: str


@dataclass(frozen=True)
class TextModule:
    name: str
    text: str


@dataclass(frozen=True)
class DataModule:
    name: str
    data: bytes


@dataclass(frozen=True)
class JsonModule:
    name: str
    value: JsonValue


@dataclass(frozen=True)
class WasmModule:
    name: str
    wasm: bytes


Module: TypeAlias = EsModule | TextModule | DataModule | JsonModule | WasmModule


@dataclass(frozen=True)
class ServiceRef:
    """`ServiceDesignator`: a service by name, optionally a named entrypoint and `ctx.props`."""

    name: str
    entrypoint: str | None = None
    props: JsonValue = None


@dataclass(frozen=True)
class TextBinding:
    name: str
    value: str


@dataclass(frozen=True)
class JsonBinding:
    name: str
    value: JsonValue


@dataclass(frozen=True)
class DataBinding:
    name: str
    value: bytes


@dataclass(frozen=True)
class ServiceBinding:
    name: str
    service: ServiceRef


@dataclass(frozen=True)
class WorkerLoaderBinding:
    """`workerLoader` (needs `workerd serve --experimental`). Bindings sharing an `id` share
    one cache of loaded Workers; without an id the binding has a private cache."""

    name: str
    id: str | None = None


@dataclass(frozen=True)
class FromEnvironmentBinding:
    """Text taken from the workerd process's environment variable `variable` (or null)."""

    name: str
    variable: str


Binding: TypeAlias = (
    TextBinding
    | JsonBinding
    | DataBinding
    | ServiceBinding
    | WorkerLoaderBinding
    | FromEnvironmentBinding
)


@dataclass(frozen=True)
class Worker:
    """A modules-syntax Worker. The first module is the main module.

    `global_outbound=None` keeps workerd's default (the implicit `internet` service, which
    only reaches public addresses); name a service (e.g. a `Network` with no `allow`) to
    restrict or redirect global `fetch()`.
    """

    name: str
    modules: Sequence[Module]
    compatibility_date: str
    compatibility_flags: Sequence[str] = ()
    bindings: Sequence[Binding] = ()
    global_outbound: ServiceRef | None = None


@dataclass(frozen=True)
class External:
    """An `external` service: every request goes to `address` over plain HTTP."""

    name: str
    address: str


@dataclass(frozen=True)
class Network:
    """A `network` service; `allow`/`deny` take CIDRs or public/private/local/network/unix."""

    name: str
    allow: Sequence[str] = ("public",)
    deny: Sequence[str] = ()


Service: TypeAlias = Worker | External | Network


@dataclass(frozen=True)
class Socket:
    """An HTTP listening socket. `address` may be omitted when the socket is passed to
    workerd as a file descriptor (`WorkerdProcess(socket_fds=...)`)."""

    name: str
    service: ServiceRef
    address: str | None = None


@dataclass(frozen=True)
class Config:
    services: Sequence[Service]
    sockets: Sequence[Socket] = ()
    v8_flags: Sequence[str] = ()
    const_name: str = "config"


class ConfigError(ValueError):
    pass


def capnp_text(value: str) -> str:
    """A Cap'n Proto text literal. Non-ASCII is written as `\\xNN` UTF-8 bytes."""
    out = ['"']
    for byte in value.encode("utf-8"):
        ch = chr(byte)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\x{byte:02x}")
    out.append('"')
    return "".join(out)


def capnp_data(value: bytes) -> str:
    """A Cap'n Proto Data literal."""
    return f'0x"{value.hex()}"'


def _json_text(value: JsonValue) -> str:
    return capnp_text(json.dumps(value, separators=(",", ":"), sort_keys=True))


def _list(items: Iterable[str]) -> str:
    return "[" + ", ".join(items) + "]"


def _designator(ref: ServiceRef) -> str:
    parts = [f"name = {capnp_text(ref.name)}"]
    if ref.entrypoint is not None:
        parts.append(f"entrypoint = {capnp_text(ref.entrypoint)}")
    if ref.props is not None:
        parts.append(f"props = (json = {_json_text(ref.props)})")
    return "(" + ", ".join(parts) + ")"


def _module(module: Module) -> str:
    name = f"name = {capnp_text(module.name)}"
    if isinstance(module, EsModule):
        body = f"esModule = {capnp_text(module.source)}"
    elif isinstance(module, TextModule):
        body = f"text = {capnp_text(module.text)}"
    elif isinstance(module, DataModule):
        body = f"data = {capnp_data(module.data)}"
    elif isinstance(module, JsonModule):
        body = f"json = {_json_text(module.value)}"
    else:
        body = f"wasm = {capnp_data(module.wasm)}"
    return f"({name}, {body})"


def _binding(binding: Binding) -> str:
    name = f"name = {capnp_text(binding.name)}"
    if isinstance(binding, TextBinding):
        body = f"text = {capnp_text(binding.value)}"
    elif isinstance(binding, JsonBinding):
        body = f"json = {_json_text(binding.value)}"
    elif isinstance(binding, DataBinding):
        body = f"data = {capnp_data(binding.value)}"
    elif isinstance(binding, ServiceBinding):
        body = f"service = {_designator(binding.service)}"
    elif isinstance(binding, WorkerLoaderBinding):
        inner = "" if binding.id is None else f"id = {capnp_text(binding.id)}"
        body = f"workerLoader = ({inner})"
    else:
        body = f"fromEnvironment = {capnp_text(binding.variable)}"
    return f"({name}, {body})"


def _service(service: Service, indent: str) -> str:
    name = f"name = {capnp_text(service.name)}"
    if isinstance(service, External):
        return f"({name}, external = (address = {capnp_text(service.address)}, http = ()))"
    if isinstance(service, Network):
        fields_ = [f"allow = {_list(capnp_text(a) for a in service.allow)}"]
        if service.deny:
            fields_.append(f"deny = {_list(capnp_text(d) for d in service.deny)}")
        return f"({name}, network = ({', '.join(fields_)}))"
    inner = indent + "    "
    lines = [
        f"modules = [\n{inner}  "
        + f",\n{inner}  ".join(_module(m) for m in service.modules)
        + f"\n{inner}]",
        f"compatibilityDate = {capnp_text(service.compatibility_date)}",
    ]
    if service.compatibility_flags:
        lines.append(
            f"compatibilityFlags = {_list(capnp_text(f) for f in service.compatibility_flags)}"
        )
    if service.bindings:
        lines.append(
            f"bindings = [\n{inner}  "
            + f",\n{inner}  ".join(_binding(b) for b in service.bindings)
            + f"\n{inner}]"
        )
    if service.global_outbound is not None:
        lines.append(f"globalOutbound = {_designator(service.global_outbound)}")
    body = f",\n{inner}".join(lines)
    return f"({name}, worker = (\n{inner}{body}\n{indent}  ))"


def _socket(sock: Socket) -> str:
    parts = [f"name = {capnp_text(sock.name)}"]
    if sock.address is not None:
        parts.append(f"address = {capnp_text(sock.address)}")
    parts.append("http = ()")
    parts.append(f"service = {_designator(sock.service)}")
    return "(" + ", ".join(parts) + ")"


def validate(config: Config) -> None:
    """Catch the mistakes workerd would only report at startup."""
    names = [s.name for s in config.services]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"duplicate service names: {dupes}")
    known = set(names) | {"internet"}
    refs: list[tuple[str, ServiceRef]] = [(f"socket {s.name}", s.service) for s in config.sockets]
    for svc in config.services:
        if not isinstance(svc, Worker):
            continue
        if not svc.modules:
            raise ConfigError(f"worker {svc.name} has no modules")
        bnames = [b.name for b in svc.bindings]
        if len(set(bnames)) != len(bnames):
            raise ConfigError(f"worker {svc.name} has duplicate binding names")
        refs += [
            (f"{svc.name}.{b.name}", b.service)
            for b in svc.bindings
            if isinstance(b, ServiceBinding)
        ]
        if svc.global_outbound is not None:
            refs.append((f"{svc.name}.globalOutbound", svc.global_outbound))
    for where, ref in refs:
        if ref.name not in known:
            raise ConfigError(f"{where} refers to unknown service {ref.name!r}")
    sockets = [s.name for s in config.sockets]
    if len(set(sockets)) != len(sockets):
        raise ConfigError("duplicate socket names")


def render_config(config: Config) -> str:
    """Render `config` as a workerd Cap'n Proto text config (one `Workerd.Config` constant)."""
    validate(config)
    ind = "    "
    parts = [
        f"{ind}services = [\n{ind}  "
        + f",\n{ind}  ".join(_service(s, ind) for s in config.services)
        + f"\n{ind}]"
    ]
    if config.sockets:
        parts.append(
            f"{ind}sockets = [\n{ind}  "
            + f",\n{ind}  ".join(_socket(s) for s in config.sockets)
            + f"\n{ind}]"
        )
    if config.v8_flags:
        parts.append(f"{ind}v8Flags = {_list(capnp_text(f) for f in config.v8_flags)}")
    body = ",\n".join(parts)
    return (
        "# Generated by harness/workerd.py; do not edit.\n"
        'using Workerd = import "/workerd/workerd.capnp";\n\n'
        f"const {config.const_name} :Workerd.Config = (\n{body}\n);\n"
    )


def write_config(config: Config, path: Path) -> Path:
    """Render `config` to `path` (synchronous; call before starting workerd)."""
    path.write_text(render_config(config))
    return path


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


PROBE_TIMEOUT = 1.0  # seconds one readiness probe may take


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

    def text(self, last: int | None = None) -> str:
        lines = list(self.lines)
        return "\n".join(lines if last is None else lines[-last:])


class WorkerdProcess:
    """`workerd serve [--experimental] <config> [const]` with an explicit async lifecycle.

    `ready` lists HTTP addresses that must answer `GET ready_path` before `start()` returns;
    sockets passed in `socket_fds` (socket name -> listening socket) are handed over with
    `--socket-fd` and waited for too. The caller keeps ownership of those socket objects.

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
        for sock in self.socket_fds.values():
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
        while line := await stream.readline():
            self._output.lines.append(line.decode("utf-8", "replace").rstrip("\n"))

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
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._drain), timeout=1.0)

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
