"""The gateway's workerd config (Cap'n Proto text), rendered per instance.

Schema facts (workerd `src/workerd/server/workerd.capnp`, pinned 1.20261117.1):
a `Worker` service with ES modules, a `workerLoader` binding (needs
`serve --experimental`), `service` bindings to `external` HTTP services (the
state service, the data service) and `globalOutbound` pointing at a `network`
service that allows nothing, so the gateway itself cannot reach the network.
Tenants get their own outbound (the gateway's `WdlEgress` entrypoint, which
decides by policy and then fetches through `NET`, a network service limited to
public addresses). `ctx.exports` (binding stubs with props) needs compatibility
date 2025-11-17. Sockets are passed as file descriptors (`--socket-fd`), so the
config names them without addresses.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from services.dataplane import binding_index
from services.dataplane.workerd_config import (
    Config,
    DurableObjectNamespaceBinding,
    EsModule,
    External,
    JsonModule,
    Module,
    Network,
    ServiceBinding,
    ServiceRef,
    Socket,
    TextBinding,
    TextModule,
    Worker,
    WorkerLoaderBinding,
    render_config,
)
from services.runtime_compat import refused_flags

GATEWAY_COMPATIBILITY_DATE = "2025-11-17"
# Never a tenant destination, whatever the policy and whatever DNS answers
# (the URL check in egress.js refuses literal addresses of these too).
TENANT_DENY = ("private", "169.254.0.0/16", "100.64.0.0/10", "0.0.0.0/8", "224.0.0.0/3",
               "192.0.0.0/24", "198.18.0.0/15", "fc00::/7", "fe80::/10", "ff00::/8",
               "::/128", "64:ff9b::/96")
# The name V8 exposes its gc() under in the gateway's processes (`--expose-gc-as`):
# the gateway collects dropped dynamic Workers' stubs with it (gateway/collect.js);
# tenant isolates lose it before their code runs (tenant/shim.js).
GC_GLOBAL = "__wdl_gc"
# Dynamic Workers a gateway process keeps loaded (all namespaces together; the
# least-recently-used of the namespace holding the most goes first): docs/loaders.md.
DEFAULT_LOADER_RESIDENT = 256
PUBLIC_SOCKET = "http"
PRIVATE_SOCKET = "control"


def workerd_dir() -> Path:
    """`workerd/` of the repository (or WDL_WORKERD_DIR, or ./workerd for installed copies)."""
    override = os.environ.get("WDL_WORKERD_DIR")
    if override:
        return Path(override)
    here = Path(__file__).resolve().parent.parent.parent / "workerd"
    return here if (here / "gateway").is_dir() else Path.cwd() / "workerd"


def loader_resident() -> int:
    """WDL_LOADER_RESIDENT, or the default (measured in `python -m bench loaders`)."""
    configured = os.environ.get("WDL_LOADER_RESIDENT")
    return max(1, int(configured)) if configured else DEFAULT_LOADER_RESIDENT


# Tenant connect()s open at once per namespace in one gateway or objects process
# (workerd/gateway/sockets.js): a CONNECT carries no request name, so this bound stands in
# for the per-request subrequest budget (docs/egress.md). WDL_SOCKETS_PER_NAMESPACE.
DEFAULT_SOCKETS_PER_NAMESPACE = 64


def sockets_per_namespace() -> int:
    """WDL_SOCKETS_PER_NAMESPACE, or the default."""
    configured = os.environ.get("WDL_SOCKETS_PER_NAMESPACE")
    return max(1, int(configured)) if configured else DEFAULT_SOCKETS_PER_NAMESPACE


def pooler_network_allow(address: str) -> list[str]:
    """The `allow` of the network service that reaches the Hyperdrive pooler: the
    pooler's own address when it is an IP literal, else the operator's networks (a name
    such as compose's `hyperdrive`). The egress dials only the configured address through
    it (workerd/gateway/sockets.js), never a tenant's."""
    host = address.rpartition(":")[0].strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return ["private", "local"]
    return [f"{ip}/{ip.max_prefixlen}"]


def es_module_lexer(root: Path) -> str:
    """The pinned es-module-lexer's asm.js build (workerd/package.json): self stubs
    (gateway/self.js) rewrite only the real import specifiers of a tenant's modules."""
    return (root / "node_modules" / "es-module-lexer" / "dist" / "lexer.asm.js").read_text(
        encoding="utf-8")


def gateway_sources(directory: Path | None = None) -> list[Module]:
    """The gateway's modules (gateway.js first: the main module), then the tenant
    shim's modules as text, which the gateway adds to every tenant bundle."""
    root = directory or workerd_dir()
    gateway = root / "gateway"
    names = ["gateway.js", *sorted(p.name for p in gateway.glob("*.js") if p.name != "gateway.js")]
    modules: list[Module] = [EsModule(n, (gateway / n).read_text(encoding="utf-8"))
                             for n in names]
    tenant = sorted((root / "tenant").glob("*.js"))
    modules += [TextModule(f"tenant/{p.name}", p.read_text(encoding="utf-8")) for p in tenant]
    # The binding kinds' indexes, made from the registry (eventlog/bindings/).
    modules += [EsModule("binding_entrypoints.js", binding_index.entrypoints_module()),
                EsModule("binding_kinds.js", binding_index.kinds_module()),
                TextModule("tenant/bindings.js", binding_index.tenant_module()),
                EsModule("shim_sources.js",
                         binding_index.shim_sources_module(p.name for p in tenant))]
    # The value codec is the gateway's too (gateway/queues.js decodes `v8` messages).
    modules.append(EsModule("values.js", (root / "tenant" / "values.js").read_text(
        encoding="utf-8")))
    # The pinned runtime's flags tenants may not use: loader.js refuses them for tenants'
    # dynamic Workers as the control API does for versions (services/runtime_compat.py).
    modules.append(JsonModule("refused-flags.json", refused_flags()))
    modules.append(EsModule("es-module-lexer.js", es_module_lexer(root)))
    return modules


@dataclass(frozen=True)
class GatewayOptions:
    state_address: str  # host:port of the state service
    domain: str = "workers.local"
    internal_token: str = ""  # guards /__wdl/scheduled and the data service
    data_address: str = ""  # host:port of the data service (KV, R2)
    egress_allow_loopback: bool = False  # operators' test setting, never for production
    d1_address: str = ""  # host:port of a D1 owner replica (it forwards to the owner)
    workflows_address: str = ""  # host:port of the workflows engine (Workflow bindings)
    objects_address: str = ""  # host:port of the Durable Object hosts (services/objects/)
    queues_address: str = ""  # host:port of a queue service replica (queue producers)
    # Live tail (workerd tail consumers, loaded only for workers someone tails:
    # services/state/tails.py); WDL_TAILS=0 turns it off for good. Request metrics
    # do not depend on it (workerd/gateway/metrics.js).
    tails: bool = field(default_factory=lambda: os.environ.get("WDL_TAILS", "1") != "0")
    # Tenants' dynamic Workers kept loaded per process (gateway/children.js).
    loader_resident: int = field(default_factory=loader_resident)
    # Tenant connect()s open at once per namespace in this process (gateway/sockets.js).
    sockets_per_namespace: int = field(default_factory=sockets_per_namespace)
    # host:port of the Hyperdrive pooler (services/hyperdrive/); "" when none runs: a
    # Hyperdrive binding's connect() is then refused.
    hyperdrive_address: str = ""


def gateway_config(options: GatewayOptions, instance: str, push_address: str = "") -> Config:
    """`push_address`: host:port of this process's private socket, where the state
    service pushes route changes to a process holding a freshness lease."""
    gateway = Worker(
        "gateway",
        gateway_sources(),
        GATEWAY_COMPATIBILITY_DATE,
        bindings=[
            WorkerLoaderBinding("LOADER"),
            ServiceBinding("STATE", ServiceRef("state")),
            TextBinding("PLATFORM_DOMAIN", options.domain),
            TextBinding("INSTANCE", instance),
            TextBinding("PUSH_ADDRESS", push_address),
            TextBinding("INTERNAL_TOKEN", options.internal_token),
            ServiceBinding("DATA", ServiceRef("data")),
            ServiceBinding("D1", ServiceRef("d1")),
            ServiceBinding("WORKFLOWS", ServiceRef("workflows")),
            ServiceBinding("OBJECTS", ServiceRef("objects")),
            ServiceBinding("QUEUES", ServiceRef("queues")),
            ServiceBinding("NET", ServiceRef("tenant-net")),
            TextBinding("EGRESS_ALLOW_LOOPBACK", "1" if options.egress_allow_loopback else ""),
            TextBinding("TAILS", "1" if options.tails else "0"),
            DurableObjectNamespaceBinding("CHILDREN", "WdlChildren"),
            TextBinding("LOADER_RESIDENT", str(options.loader_resident)),
            TextBinding("SOCKET_LIMIT", str(options.sockets_per_namespace)),
            TextBinding("POOLER_ADDRESS", options.hyperdrive_address),
            ServiceBinding("POOLER_NET", ServiceRef("pooler-net")),
        ],
        ephemeral_objects=["WdlChildren"],
        global_outbound=ServiceRef("no-network"),
        # Fetcher.queue(): the queue consumer runs tenants' queue() through the gateway.
        compatibility_flags=["service_binding_extra_handlers"],
    )
    allow = ["public", "local"] if options.egress_allow_loopback else ["public"]
    return Config(
        services=[gateway, External("state", options.state_address),
                  External("data", options.data_address or "127.0.0.1:9"),
                  External("d1", options.d1_address or "127.0.0.1:9"),
                  External("workflows", options.workflows_address or "127.0.0.1:9"),
                  External("objects", options.objects_address or "127.0.0.1:9"),
                  External("queues", options.queues_address or "127.0.0.1:9"),
                  Network("no-network", allow=[]),
                  Network("tenant-net", allow=allow, deny=TENANT_DENY),
                  Network("pooler-net", allow=pooler_network_allow(options.hyperdrive_address)
                          if options.hyperdrive_address else [])],
        # Both sockets serve the gateway: `http` is the public listener shared by
        # every instance during a recycle, `control` is private to one instance
        # (readiness checks must reach *this* process).
        sockets=[Socket(PUBLIC_SOCKET, ServiceRef("gateway")),
                 Socket(PRIVATE_SOCKET, ServiceRef("gateway"))],
        v8_flags=[f"--expose-gc-as={GC_GLOBAL}"],
    )


def render_gateway_config(options: GatewayOptions, instance: str,
                          push_address: str = "") -> str:
    return render_config(gateway_config(options, instance, push_address))
