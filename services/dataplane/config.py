"""The gateway's workerd config (Cap'n Proto text), rendered per instance.

Schema facts (workerd `src/workerd/server/workerd.capnp`, pinned 1.20261117.1):
a `Worker` service with ES modules, a `workerLoader` binding (needs
`serve --experimental`), a `service` binding to an `external` HTTP service
(the state service) and `globalOutbound` pointing at a `network` service that
allows nothing, so neither the gateway nor a tenant that inherited its
outbound could reach the network. Sockets are passed as file descriptors
(`--socket-fd`), so the config names them without addresses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from services.dataplane.workerd_config import (
    Config,
    EsModule,
    External,
    Network,
    ServiceBinding,
    ServiceRef,
    Socket,
    TextBinding,
    Worker,
    WorkerLoaderBinding,
    render_config,
)

GATEWAY_COMPATIBILITY_DATE = "2025-06-01"
PUBLIC_SOCKET = "http"
PRIVATE_SOCKET = "control"


def workerd_dir() -> Path:
    """`workerd/` of the repository (or WDL_WORKERD_DIR, or ./workerd for installed copies)."""
    override = os.environ.get("WDL_WORKERD_DIR")
    if override:
        return Path(override)
    here = Path(__file__).resolve().parent.parent.parent / "workerd"
    return here if (here / "gateway").is_dir() else Path.cwd() / "workerd"


def gateway_sources(directory: Path | None = None) -> list[EsModule]:
    """The gateway's modules; the first is the main module."""
    base = (directory or workerd_dir()) / "gateway"
    return [EsModule("gateway.js", (base / "gateway.js").read_text(encoding="utf-8")),
            EsModule("routing.js", (base / "routing.js").read_text(encoding="utf-8"))]


@dataclass(frozen=True)
class GatewayOptions:
    state_address: str  # host:port of the state service
    domain: str = "workers.local"
    internal_token: str = ""  # guards /__wdl/scheduled; empty disables it


def gateway_config(options: GatewayOptions, instance: str) -> Config:
    gateway = Worker(
        "gateway",
        gateway_sources(),
        GATEWAY_COMPATIBILITY_DATE,
        bindings=[
            WorkerLoaderBinding("LOADER"),
            ServiceBinding("STATE", ServiceRef("state")),
            TextBinding("PLATFORM_DOMAIN", options.domain),
            TextBinding("INSTANCE", instance),
            TextBinding("INTERNAL_TOKEN", options.internal_token),
        ],
        global_outbound=ServiceRef("no-network"),
    )
    return Config(
        services=[gateway, External("state", options.state_address),
                  Network("no-network", allow=[])],
        # Both sockets serve the gateway: `http` is the public listener shared by
        # every instance during a recycle, `control` is private to one instance
        # (readiness checks must reach *this* process).
        sockets=[Socket(PUBLIC_SOCKET, ServiceRef("gateway")),
                 Socket(PRIVATE_SOCKET, ServiceRef("gateway"))],
    )


def render_gateway_config(options: GatewayOptions, instance: str) -> str:
    return render_config(gateway_config(options, instance))
