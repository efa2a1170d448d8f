"""`wdl dev`, `wdl up` and `wdl health`: run the platform's processes.

* `wdl dev`: everything in one process on embedded backends under
  `WDL_DATA_DIR` (default `.wdl/dev`): control API, projector, state service
  the gateway workerd and the cron scheduler. No external servers. State
  survives a restart.
* `wdl up`: the same against Kafka/Redis/PostgreSQL/S3 from the environment
  (e.g. `set -a; . .wdl/services.env; set +a`);
  `--only api|projector|state|gateway|scheduler|workflows|d1|objects|queues|hyperdrive`
  runs one of them alone, for multi-replica deployments.
* `wdl health api|projector|state|gateway|...`: exit 0 if that process answers. Every
  component but the control API wants the internal token: from WDL_INTERNAL_TOKEN,
  else the one `wdl dev` keeps in `WDL_DATA_DIR/internal.token` (never an argument:
  a command line is readable by every user of the host).

Ctrl-C (SIGINT) or SIGTERM stops everything cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import httpx
import typer
from rich.console import Console

from services.components import COMPONENTS, INTERNAL_TOKEN_FILE
from services.dataplane.gateway import RecyclePolicy, WatchdogPolicy
from services.logs import configure as configure_logging
from services.settings import Settings

if TYPE_CHECKING:
    from services.platform import PlatformOptions

# services.platform (every component and its libraries) is imported by the commands that
# start the platform: every `wdl` command loads this module.

console = Console(stderr=True)

ApiPort = Annotated[int, typer.Option("--api-port", help="control API port")]
ApiHost = Annotated[str, typer.Option("--api-host", help="control API address")]
GwPort = Annotated[int, typer.Option("--gateway-port", "--port", help="gateway port")]
GwHost = Annotated[str, typer.Option("--gateway-host", help="gateway address")]
StatePort = Annotated[int, typer.Option("--state-port", help="state service port (0: any)")]
Domain = Annotated[str, typer.Option("--domain", help="platform domain: <ns>.<domain>")]
MaxStale = Annotated[int, typer.Option("--recycle-stale", help="recycle workerd when this "
                                       "many loaded versions are no longer routed")]


HYPERDRIVE_PORT = 26432  # `wdl up`'s pooler, unless WDL_HYPERDRIVE_URL says otherwise
HYPERDRIVE_HEALTH_PORT = 8799  # its /healthz and /metrics


def _run(settings: Settings, options: PlatformOptions, admin_token: str | None) -> None:
    from services.crypto import NoRootKey
    from services.platform import Platform, summary

    configure_logging(json_when_piped=not settings.embedded)  # `wdl up`, not `wdl dev`
    # Everything the platform writes (tenant data, logs, blobs, configs) is its user's
    # alone; the files that matter are also made private explicitly (private_files).
    os.umask(0o077)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with Platform(settings, options) as platform:
            for line in summary(platform, admin_token):
                console.print(line, highlight=False, soft_wrap=True)
            console.print("ready; Ctrl-C stops", highlight=False)
            failed = asyncio.ensure_future(platform.wait())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({failed, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for task in (failed, stopping):
                task.cancel()
            if failed.done() and not failed.cancelled() and failed.exception() is not None:
                console.print(f"[red]a component failed:[/] {failed.exception()}")
            console.print("stopping", highlight=False)

    try:
        asyncio.run(main())
    except (ValueError, NoRootKey) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    except OSError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None


Processes = Annotated[int | None, typer.Option(
    "--processes", min=1, help="gateway workerd processes [default: one per core; env "
    "WDL_GATEWAY_PROCESSES]")]
HangTimeout = Annotated[float | None, typer.Option(
    "--hang-timeout", min=0.2, help="seconds a workerd may stop answering before the watchdog "
    "replaces it (the CPU budget of one request) [default 1.5; env WDL_HANG_TIMEOUT]")]


def _watchdog(hang_timeout: float | None) -> WatchdogPolicy:
    return WatchdogPolicy() if hang_timeout is None else WatchdogPolicy(hang_timeout=hang_timeout)


def dev(api_port: ApiPort = 8787, api_host: ApiHost = "127.0.0.1",
        gateway_port: GwPort = 8080, gateway_host: GwHost = "127.0.0.1",
        state_port: StatePort = 0, domain: Domain = "workers.local",
        recycle_stale: MaxStale = 64, processes: Processes = None,
        hang_timeout: HangTimeout = None) -> None:
    """Run the whole platform in one process on embedded backends (what `make run` does)."""
    from services.platform import PlatformOptions, dev_admin_token, dev_internal_token

    settings = Settings.from_env(embedded=True)
    token = dev_admin_token(settings)
    # Host claims route without a DNS proof here: a laptop has no public DNS (docs/hosts.md).
    options = PlatformOptions(api_host=api_host, api_port=api_port, gateway_host=gateway_host,
                              gateway_port=gateway_port, state_port=state_port, domain=domain,
                              scheduler_health_port=0, data_port=0, host_verification=False,
                              recycle=RecyclePolicy(max_stale=recycle_stale),
                              gateway_processes=processes, watchdog=_watchdog(hang_timeout),
                              internal_token=dev_internal_token(settings))
    _run(settings, options, token)


def up(only: Annotated[list[str] | None, typer.Option(
           "--only", help="run only these components (repeatable): "
           + ", ".join(COMPONENTS))] = None,
       api_port: ApiPort = 8787, api_host: ApiHost = "127.0.0.1",
       gateway_port: GwPort = 8080, gateway_host: GwHost = "127.0.0.1",
       state_port: StatePort = 8790,
       state_host: Annotated[str, typer.Option("--state-host")] = "127.0.0.1",
       state_url: Annotated[str | None, typer.Option(
           "--state-url", help="state service URL, for --only gateway (and --only data: "
           "where it reports the tailed workers) "
           "[env WDL_STATE_URL]")] = None,
       data_port: Annotated[int, typer.Option("--data-port")] = 8793,
       data_host: Annotated[str, typer.Option("--data-host")] = "127.0.0.1",
       data_url: Annotated[str | None, typer.Option(
           "--data-url", help="data service URL (KV, R2), for --only gateway "
           "[env WDL_DATA_URL]")] = None,
       projector_health_port: Annotated[int, typer.Option("--projector-health-port")] = 8791,
       scheduler_health_port: Annotated[int, typer.Option("--scheduler-health-port")] = 8792,
       gateway_url: Annotated[str | None, typer.Option(
           "--gateway-url", help="gateway URL, for --only scheduler "
           "[env WDL_GATEWAY_URL]")] = None,
       gateway_health_port: Annotated[int, typer.Option(
           "--gateway-health-port", help="gateway supervisor /healthz and /metrics")] = 8794,
       d1_port: Annotated[int, typer.Option(
           "--d1-port", help="D1 owner service (internal API and /healthz)")] = 8795,
       d1_url: Annotated[str | None, typer.Option(
           "--d1-url", help="a D1 replica's URL, for a gateway without it "
           "[env WDL_D1_URL]")] = None,
       objects_port: Annotated[int, typer.Option(
           "--objects-port", help="Durable Object host (internal API)")] = 8796,
       objects_url: Annotated[str | None, typer.Option(
           "--objects-url", help="a Durable Object host's URL, for a gateway without it "
           "[env WDL_OBJECTS_URL]")] = None,
       queues_port: Annotated[int, typer.Option(
           "--queues-port", help="queue service producer endpoint and /healthz")] = 8797,
       hyperdrive_port: Annotated[int, typer.Option(
           "--hyperdrive-port", help="the Hyperdrive pooler (PgBouncer); default: "
           "WDL_HYPERDRIVE_URL's port, else 26432")] = 0,
       hyperdrive_host: Annotated[str, typer.Option(
           "--hyperdrive-host", help="where the pooler listens")] = "127.0.0.1",
       hyperdrive_health_port: Annotated[int, typer.Option(
           "--hyperdrive-health-port", help="the Hyperdrive component's /healthz and "
           "/metrics [default: WDL_HYPERDRIVE_HEALTH_PORT, else 8799]")] = 0,
       hyperdrive_health_host: Annotated[str, typer.Option(
           "--hyperdrive-health-host", help="where its /healthz and /metrics listen "
           "(internal token required)")] = "127.0.0.1",
       queues_url: Annotated[str | None, typer.Option(
           "--queues-url", help="a queue service replica's URL, for a gateway without it "
           "[env WDL_QUEUES_URL]")] = None,
       workflows_port: Annotated[int, typer.Option(
           "--workflows-port", help="workflows engine API and /healthz")] = 8798,
       workflows_url: Annotated[str | None, typer.Option(
           "--workflows-url", help="workflows engine URL, for a gateway without it "
           "[env WDL_WORKFLOWS_URL]")] = None,
       domain: Domain = "workers.local", recycle_stale: MaxStale = 64,
       processes: Processes = None, hang_timeout: HangTimeout = None) -> None:
    """Run the platform against Kafka/Redis/PostgreSQL/S3 configured in the environment."""
    from services.platform import PlatformOptions

    try:
        settings = Settings.from_env(embedded=False)
    except ValueError as exc:
        console.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None
    components = frozenset(only) if only else frozenset(COMPONENTS)
    options = PlatformOptions(
        components=components, api_host=api_host, api_port=api_port,
        gateway_host=gateway_host, gateway_port=gateway_port, state_host=state_host,
        state_port=state_port, projector_health_port=projector_health_port,
        scheduler_health_port=scheduler_health_port, domain=domain,
        state_url=state_url or os.environ.get("WDL_STATE_URL"),
        data_port=data_port, data_host=data_host,
        data_url=data_url or os.environ.get("WDL_DATA_URL"),
        gateway_url=gateway_url or os.environ.get("WDL_GATEWAY_URL"),
        recycle=RecyclePolicy(max_stale=recycle_stale), gateway_health_port=gateway_health_port,
        gateway_processes=processes, watchdog=_watchdog(hang_timeout),
        workflows_port=workflows_port, d1_port=d1_port,
        d1_url=d1_url or os.environ.get("WDL_D1_URL"),
        objects_port=objects_port,
        objects_url=objects_url or os.environ.get("WDL_OBJECTS_URL"),
        workflows_url=workflows_url or os.environ.get("WDL_WORKFLOWS_URL"),
        queues_port=queues_port, queues_url=queues_url or os.environ.get("WDL_QUEUES_URL"),
        hyperdrive_host=hyperdrive_host,
        hyperdrive_health_port=hyperdrive_health_port or int(
            os.environ.get("WDL_HYPERDRIVE_HEALTH_PORT") or HYPERDRIVE_HEALTH_PORT),
        hyperdrive_health_host=hyperdrive_health_host,
        hyperdrive_port=hyperdrive_port or urlsplit(
            os.environ.get("WDL_HYPERDRIVE_URL") or "").port or HYPERDRIVE_PORT)
    _run(settings, options, None)



HEALTH_DEFAULTS = {
    "api": "http://127.0.0.1:8787/healthz",
    "projector": "http://127.0.0.1:8791/healthz",
    "state": "http://127.0.0.1:8790/healthz",
    "data": "http://127.0.0.1:8793/healthz",
    "gateway": "http://127.0.0.1:8080/__wdl/healthz",
    "scheduler": "http://127.0.0.1:8792/healthz",
    "workflows": "http://127.0.0.1:8798/healthz",
    "queues": "http://127.0.0.1:8797/healthz",
    "d1": "http://127.0.0.1:8795/healthz",
    "objects": "http://127.0.0.1:8796/__wdl/healthz",
    # The component's health server: PgBouncer alive and listening (`--url
    # tcp://host:port` is a bare connect to a pooler instead).
    "hyperdrive": f"http://127.0.0.1:{HYPERDRIVE_HEALTH_PORT}/healthz",
}


def _internal_token() -> str | None:
    token = os.environ.get("WDL_INTERNAL_TOKEN")
    if token:
        return token
    path = Settings.from_env(embedded=True).data_dir / INTERNAL_TOKEN_FILE
    try:
        return path.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def health(component: Annotated[str, typer.Argument(help=", ".join(COMPONENTS))],
           url: Annotated[str | None, typer.Option("--url", help="health URL to probe")] = None,
           timeout: Annotated[float, typer.Option("--timeout")] = 3.0) -> None:
    """Exit 0 if the component's health endpoint answers 200, else 1."""
    if component not in HEALTH_DEFAULTS:
        console.print(f"[red]error:[/] unknown component {component!r}")
        raise typer.Exit(2)
    target = url or HEALTH_DEFAULTS[component]
    if component == "hyperdrive" and not url and os.environ.get("WDL_HYPERDRIVE_HEALTH_PORT"):
        target = f"http://127.0.0.1:{int(os.environ['WDL_HYPERDRIVE_HEALTH_PORT'])}/healthz"
    if target.startswith("tcp://"):
        parts = urlsplit(target)
        try:
            socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0),
                                     timeout=timeout).close()
        except OSError as exc:
            console.print(f"{component}: unreachable at {target}: {exc}")
            raise typer.Exit(1) from None
        sys.stdout.write(f"{component}: listening at {target}\n")
        raise typer.Exit(0)
    # The control API is public (its /healthz is open): the internal token never goes there.
    token = None if component == "api" else _internal_token()
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(target, timeout=timeout, headers=headers)
    except httpx.HTTPError as exc:
        console.print(f"{component}: unreachable at {target}: {exc}")
        raise typer.Exit(1) from None
    ok = response.status_code == 200
    with contextlib.suppress(UnicodeDecodeError):
        sys.stdout.write(response.text.rstrip() + "\n")
    raise typer.Exit(0 if ok else 1)


def register(app: typer.Typer) -> None:
    app.command("dev")(dev)
    app.command("up")(up)
    app.command("health")(health)
