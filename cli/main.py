"""The `wdl` command: one Typer app, one module per command group."""

from __future__ import annotations

import typer

from cli import (
    control,
    d1,
    hyperdrive,
    kv,
    projections,
    quarantine,
    queues,
    r2,
    run,
    tail,
    workflows,
)
from cli.resources import kv_namespace_app, r2_bucket_app

app = typer.Typer(
    name="wdl",
    help="WDL: self-hosted Workers on stock workerd, with an event-sourced control plane.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(projections.app, name="projections")
kv.app.add_typer(kv_namespace_app, name="namespace")
r2.app.add_typer(r2_bucket_app, name="bucket")
app.add_typer(kv.app, name="kv")
app.add_typer(r2.app, name="r2")
app.add_typer(d1.app, name="d1")
app.add_typer(queues.app, name="queues")
app.add_typer(hyperdrive.app, name="hyperdrive")
app.add_typer(workflows.app, name="workflows")
control.register(app)
quarantine.register(app)
run.register(app)
tail.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
