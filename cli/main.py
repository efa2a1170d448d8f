"""The `wdl` command: one Typer app, one module per command group."""

from __future__ import annotations

import typer

from cli import control, projections, run

app = typer.Typer(
    name="wdl",
    help="WDL: self-hosted Workers on stock workerd, with an event-sourced control plane.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(projections.app, name="projections")
control.register(app)
run.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
