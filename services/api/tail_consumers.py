"""Deploy-time checks of a version's Tail Workers (wrangler `tail_consumers`).

A tail consumer is a worker of the producer's own namespace, named by its worker
name alone: there is no `namespace/worker` form, so a version can neither send its
events to another namespace nor be fed by another namespace's producer
(docs/tail-workers.md). Naming one that does not exist yet is allowed, with a
warning: the producer may be deployed before its tail worker (events are dropped,
and counted, until it exists), as on Cloudflare.
"""

from __future__ import annotations

from eventlog import validation as v
from eventlog.errors import InvalidEvent
from services.api.context import ApiContext
from services.api.errors import ApiError


def check_names(ns: str, consumers: list[str]) -> tuple[str, ...]:
    """The names as the event carries them, or a 400 saying what is wrong."""
    for i, name in enumerate(consumers):
        field = f"tail_consumers[{i}]"
        if "/" in name or ":" in name:
            raise ApiError(400, "tail_consumer_not_in_namespace",
                           f"tail consumer {name!r}: a Tail Worker must be a worker of "
                           f"namespace {ns}, named by its worker name alone", field=field)
        try:
            v.name(field, name)
        except InvalidEvent as exc:
            raise ApiError(400, "invalid_tail_consumer",
                           f"tail consumer {name!r}: {exc.reason}", field=field) from None
    if len(set(consumers)) != len(consumers):
        raise ApiError(400, "invalid_tail_consumer", "a tail consumer is named twice",
                       field="tail_consumers")
    return tuple(consumers)


async def warnings(ctx: ApiContext, ns: str, worker: str,
                   consumers: tuple[str, ...]) -> list[str]:
    out = []
    for name in consumers:
        if name == worker:
            out.append(f"tail consumer {name!r} is this worker: a worker never gets its own "
                       "events (no loops)")
            continue
        if await ctx.reader.active_version(ns, name) is None:
            out.append(f"tail consumer {name!r} has no active version in namespace {ns} yet: "
                       "its events are dropped until it is deployed")
    return out
