"""Options, output and error handling shared by the control-plane commands."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli.client import (
    EXIT_FAILURE,
    ApiFailure,
    ConfigError,
    ControlClient,
    resolve_config,
)

err = Console(stderr=True)

UrlOpt = Annotated[str | None, typer.Option("--url", help="control API URL "
                                            "[env WDL_CONTROL_URL]", show_default=False)]
TokenOpt = Annotated[str | None, typer.Option("--token", help="bearer token [env WDL_TOKEN]",
                                              show_default=False)]
ProfileOpt = Annotated[str | None, typer.Option("--profile", help="profile of "
                                                "~/.config/wdl/config.toml")]
NsOpt = Annotated[str | None, typer.Option("--ns", "-n", help="namespace [env WDL_NAMESPACE]",
                                           show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


# API error code -> the one obvious next step ({namespace} is filled in).
HINTS = {
    "namespace_not_found": "create it with `wdl ns create {namespace}` (admin token), or "
                           "use a token scoped to it (`wdl whoami` shows yours)",
    "unauthenticated": "the token is missing, wrong, revoked or expired: set WDL_TOKEN or "
                       "--token (`wdl dev` prints an admin token); `wdl whoami` checks it",
    "forbidden": "`wdl whoami` shows this token's role and namespaces",
    "unreachable": "start the platform (`wdl dev`) or point --url / WDL_CONTROL_URL at the "
                   "control API; `wdl doctor` checks the set-up",
}


@contextmanager
def connect(url: str | None, token: str | None, profile: str | None,
            namespace: str | None = None, *, need_namespace: bool = False,
            hints: Mapping[str, str] | None = None,
            ) -> Iterator[tuple[ControlClient, str]]:
    """A client and the namespace; exits with the right code on any failure.

    `hints` override `HINTS` for this command (code -> next step)."""
    try:
        config = resolve_config(url, token, namespace, profile)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(exc.exit_code) from None
    if need_namespace and not config.namespace:
        err.print("[red]error:[/] a namespace is required (--ns, WDL_NAMESPACE or a profile)")
        raise typer.Exit(2)
    client = ControlClient(config)
    try:
        yield client, config.namespace or ""
    except ApiFailure as exc:
        report(exc, {**HINTS, **(hints or {})}, config.namespace or "NS")
        raise typer.Exit(exc.exit_code) from None
    finally:
        client.close()


def report(exc: ApiFailure, hints: Mapping[str, str] | None = None,
           namespace: str = "NS") -> None:
    where = f" (field {exc.body['field']})" if exc.body.get("field") else ""
    label = "refused" if exc.status == 409 else "error"
    err.print(f"[red]{label}:[/] {exc.code}: {exc.message}{where}", highlight=False)
    if exc.body.get("event_id"):
        err.print(f"  event {exc.body['event_id']}", highlight=False)
    hint = (HINTS if hints is None else hints).get(exc.code)
    if hint:
        err.print(f"  hint: {hint.format(namespace=namespace)}", highlight=False,
                  soft_wrap=True)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def when(ms: Any) -> str:
    if not isinstance(ms, int):
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


# Columns of free text that may wrap; every other column (ids, names, times, sizes) is
# kept on one line, whole, and the table turns into records when that cannot fit.
PROSE = frozenset({"description", "label", "error", "reason", "detail", "metadata",
                   "namespaces"})
_PROSE_MIN = 12


def stdout_console() -> Console:
    """The console tables go to; a pipe gets lines as long as the rows need."""
    console = Console()
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console
    # rich assumes 80 columns when it cannot ask a terminal; `wdl … | grep` wants whole rows.
    return Console(width=100_000)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]],
          formatters: dict[str, Callable[[Any], str]] | None = None, *,
          console: Console | None = None, prose: Collection[str] = PROSE) -> None:
    """Rows as a table when the whole-valued columns fit the width, else as records.

    No value is ever cut or ellipsised: `--json` is for machines, but what a person
    copies from the table (an id, a version, a time) must be the real thing."""
    out = console or stdout_console()
    fmt = formatters or {}
    cells = [[fmt.get(key, _cell)(row.get(key)) for key, _ in columns] for row in rows]
    titles = [title for _, title in columns]
    wraps = [key in prose for key, _ in columns]
    widths = [max([cell_len(title), *(cell_len(line) for r in cells for line in
                                      r[i].splitlines() or [""])])
              for i, title in enumerate(titles)]
    # Box edges: one rule per column plus one, and one space of padding either side.
    need = 1 + sum(3 + (min(w, _PROSE_MIN) if wrap else w)
                   for w, wrap in zip(widths, wraps, strict=True))
    if need <= out.width or not cells:
        t = Table()
        for title, wrap in zip(titles, wraps, strict=True):
            t.add_column(title, no_wrap=not wrap, overflow="fold")
        for r in cells:
            t.add_row(*r)
        out.print(t)
        return
    pad = max(cell_len(title) for title in titles)
    for n, r in enumerate(cells):
        if n:
            out.print()
        for title, value in zip(titles, r, strict=True):
            out.print(Text(f"{title:<{pad}}  {value}"), soft_wrap=True)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def outcome(result: dict[str, Any], what: str, as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    pos = result.get("position") or {}
    err.print(f"[green]ok[/] {what} (event {result.get('event_id')} at "
              f"{pos.get('partition')}:{pos.get('offset')})", highlight=False)


def fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    err.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


__all__ = ["ApiFailure"]
