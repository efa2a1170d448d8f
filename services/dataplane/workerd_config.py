"""The workerd config model and its Cap'n Proto text renderer.

The model is a small, typed subset of `src/workerd/server/workerd.capnp` (the schema is
also embedded in the binary): sockets, worker services made of inline modules, bindings
(text/json/data/service/workerLoader/fromEnvironment), `external` HTTP servers and `network`
services. `render_config()` turns it into the text format that `workerd serve` reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

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


@dataclass(frozen=True)
class DurableObjectNamespaceBinding:
    """A Durable Object namespace of the same Worker (`class_name` one of its
    `ephemeral_objects`)."""

    name: str
    class_name: str


Binding: TypeAlias = (
    TextBinding
    | JsonBinding
    | DataBinding
    | ServiceBinding
    | WorkerLoaderBinding
    | FromEnvironmentBinding
    | DurableObjectNamespaceBinding
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
    # Durable Object classes exported by the Worker, served as `ephemeralLocal`
    # namespaces (in memory, one process, `env.X.get(name)` by name) with in-memory storage.
    ephemeral_objects: Sequence[str] = ()


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
    elif isinstance(binding, DurableObjectNamespaceBinding):
        body = f"durableObjectNamespace = {capnp_text(binding.class_name)}"
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
    if service.ephemeral_objects:
        lines.append("durableObjectNamespaces = " + _list(
            f"(className = {capnp_text(c)}, ephemeralLocal = void)"
            for c in service.ephemeral_objects))
        lines.append("durableObjectStorage = (inMemory = void)")
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
        for b in svc.bindings:
            if (isinstance(b, DurableObjectNamespaceBinding)
                    and b.class_name not in svc.ephemeral_objects):
                raise ConfigError(f"{svc.name}.{b.name} names {b.class_name!r}, which is not "
                                  "one of the worker's ephemeral_objects")
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
        "# Generated by services/dataplane/workerd_config.py; do not edit.\n"
        'using Workerd = import "/workerd/workerd.capnp";\n\n'
        f"const {config.const_name} :Workerd.Config = (\n{body}\n);\n"
    )


def write_config(config: Config, path: Path) -> Path:
    """Render `config` to `path` (synchronous; call before starting workerd)."""
    path.write_text(render_config(config))
    return path
