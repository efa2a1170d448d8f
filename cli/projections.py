"""`wdl projections …`: status, verify, rebuild and dead letters (operator tools).

These talk to the backends directly (Kafka/Redis/PostgreSQL from the
environment, e.g. `.wdl/services.env`), which is what an operator rebuilding
projections has. Without them (embedded mode) the projection lives in memory
inside the running `wdl dev` process, which no other process can read:
status, verify and rebuild then act on that platform through its control API
(admin token), or refuse, saying why. Exit codes: 0 ok, 1 failure or
difference, 2 usage error.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cli.client import ApiFailure, ConfigError, ControlClient, resolve_config
from cli.common import ProfileOpt, TokenOpt, UrlOpt, report, table
from services.settings import Settings

if TYPE_CHECKING:
    from projections.runtime import Backends

# The backends' libraries (SQLAlchemy, alembic, psycopg, redis, aiokafka) are imported by
# the commands that use them: every `wdl` command loads this module, and they cost about
# a second of start-up.

app = typer.Typer(help="Inspect, verify and rebuild the Redis and audit projections.",
                  no_args_is_help=True)
console = Console(stderr=True)
T = TypeVar("T")


def _run(work: Callable[[Backends], Awaitable[T]]) -> T:
    from projections.runtime import open_backends

    try:
        settings = Settings.from_env()
    except ValueError as exc:
        console.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None

    async def go() -> T:
        async with open_backends(settings) as backends:
            return await work(backends)

    return asyncio.run(go())


def _embedded() -> bool:
    try:
        return Settings.from_env().embedded
    except ValueError:
        return False  # _run reports the configuration error


EMBEDDED_HINT = ("the embedded projection lives inside the running `wdl dev` process: start it "
                 "(`make run`) and pass its control API (--url / WDL_CONTROL_URL) and admin "
                 "token, or set REDIS_URL, KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL to act on "
                 "those backends directly")


def _via_api(method: str, path: str, url: str | None, token: str | None,
             profile: str | None) -> Any:
    """The running platform's answer, or exit 1 saying why there is none."""
    try:
        config = resolve_config(url, token, None, profile)
    except ConfigError as exc:
        console.print(f"[red]refused:[/] {EMBEDDED_HINT} ({exc})")
        raise typer.Exit(1) from None
    client = ControlClient(config)
    try:
        return client.request(method, path)
    except ApiFailure as exc:
        report(exc, {"unreachable": EMBEDDED_HINT})
        raise typer.Exit(1) from None
    finally:
        client.close()


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


@app.command("status")
def status_cmd(as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
               url: UrlOpt = None, token: TokenOpt = None, profile: ProfileOpt = None,
               ) -> None:
    """Per projection and partition: applied position, log end and lag."""
    if _embedded():
        rows = _via_api("GET", "/v1/projections/status", url, token, profile)
    else:
        from projections.rebuild import status

        rows = _run(lambda b: status(b.log, b.store, b.audit))
    if as_json:
        _print_json(rows)
        return
    table(rows, [("projection", "projection"), ("generation", "generation"),
                 ("partition", "partition"), ("applied", "applied"), ("log_end", "log end"),
                 ("lag", "lag")])


@app.command("verify")
def verify_cmd(as_json: bool = typer.Option(False, "--json"), url: UrlOpt = None,
               token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Compare a digest of the live projections with a fresh replay; exit 1 on any difference."""
    if _embedded():
        found = dict(_via_api("POST", "/v1/projections/verify", url, token, profile))
    else:
        from projections.rebuild import verify_live

        found = _run(lambda b: verify_live(b.log, b.store, b.audit)).as_dict()
    if as_json:
        _print_json(found)
    elif found["ok"]:
        console.print(f"[green]ok[/] generation {found['generation']} digest {found['digest']}")
    else:
        console.print(f"[red]DIFFERENT[/] live {found['digest']} replay "
                      f"{found['expected_digest']}")
        for line in found.get("differences") or []:
            console.print(f"  {line}")
        if found.get("audit_ok") is False:
            console.print("  audit tables differ from the replay")
    raise typer.Exit(0 if found["ok"] else 1)


def _parse_until(value: str | None) -> tuple[dict[int, int] | None, int | None]:
    """`P:O[,P:O…]` log positions, or an ISO-8601 time / unix milliseconds."""
    if value is None:
        return None, None
    if ":" in value and all(part.count(":") == 1 and part.replace(":", "").isdigit()
                            for part in value.split(",")):
        positions = {}
        for part in value.split(","):
            p, o = part.split(":")
            positions[int(p)] = int(o)
        return positions, None
    if value.isdigit():
        return None, int(value)
    try:
        return None, int(datetime.fromisoformat(value).timestamp() * 1000)
    except ValueError:
        raise typer.BadParameter(
            "expected partition:offset[,…], unix milliseconds or an ISO-8601 time") from None


@app.command("rebuild")
def rebuild_cmd(
    until: str | None = typer.Option(None, help="stop at partition:offset[,…] or a time "
                                     "(forensics: builds a shadow generation, no switch)"),
    grace: float = typer.Option(2.0, help="seconds to keep applying after the switch"),
    keep_old: bool = typer.Option(False, help="keep the previous generations"),
    workers: int = typer.Option(1, min=1, help="processes folding partition subsets in "
                                "parallel (Kafka, Redis and PostgreSQL only)"),
    as_json: bool = typer.Option(False, "--json"),
    url: UrlOpt = None, token: TokenOpt = None, profile: ProfileOpt = None,
) -> None:
    """Replay the log into shadow generations, verify them, switch readers atomically."""
    positions, until_ms = _parse_until(until)
    if _embedded():
        if until is not None or keep_old or workers != 1:
            console.print("[red]refused:[/] --until, --keep-old and --workers need the "
                          "backends (REDIS_URL, KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL); the "
                          "embedded platform rebuilds in place only")
            raise typer.Exit(2)
        result = dict(_via_api("POST", "/v1/projections/rebuild", url, token, profile))
        _print_rebuild(result, as_json)
        return

    from projections.rebuild import VerificationFailed, positions_at_time, rebuild

    async def work(b: Backends) -> dict[str, Any]:
        limit = positions
        if until_ms is not None:
            limit = await positions_at_time(b.log, until_ms)
        ends = await b.log.end_positions()
        total = sum((limit or ends).get(p, 0) for p in ends)
        with Progress(TextColumn("rebuild"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=console,
                      disable=as_json or not console.is_terminal) as bar:
            task = bar.add_task("events", total=total)
            report = await rebuild(b.log, b.store, b.audit, until=limit,
                                   switch=limit is None, grace_s=grace,
                                   drop_old=not keep_old, workers=workers,
                                   progress=lambda n: bar.advance(task, n))
        return report.as_dict()

    try:
        result = _run(work)
    except VerificationFailed as exc:
        console.print(f"[red]verification failed:[/] {exc}")
        for line in exc.differences:
            console.print(f"  {line}")
        raise typer.Exit(1) from None
    _print_rebuild(result, as_json)


def _print_rebuild(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(result)
        return
    console.print(f"generation {result['generation']} (audit {result['audit_generation']}): "
                  f"{result['events']} events in {result['seconds']}s, "
                  f"dead letters {result['dead_letters']}, "
                  f"{'switched' if result['switched'] else 'NOT switched (shadow kept)'}")
    console.print(f"digest {result['digest']}")
    if result["dead_letters"]:
        console.print(f"[yellow]{result['dead_letters']} dead letters[/]: "
                      "see `wdl projections dead-letters`")


@app.command("dead-letters")
def dead_letters_cmd(
    redrive_: bool = typer.Option(False, "--redrive", help="retry them with the current code "
                                  "(a rebuild folds the ones that now decode in place)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List events that could not be decoded or applied, or re-drive them."""
    from projections.dead_letters import list_dead_letters, redrive

    if redrive_:
        result = _run(lambda b: redrive(b.log, b.store, b.audit))
        if as_json:
            _print_json(result)
        else:
            console.print(f"{result['recoverable']} of {result['dead_letters']} dead letters "
                          f"now decode; rebuilt: {result['rebuilt']}")
        raise typer.Exit(0 if result["remaining"] == 0 else 1)
    rows = _run(lambda b: list_dead_letters(b.audit))
    if as_json:
        _print_json(rows)
        return
    table(rows, [("partition", "partition"), ("offset", "offset"), ("code", "code"),
                 ("reason", "reason"), ("size", "bytes")])
