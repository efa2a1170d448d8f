"""`queues.producers`: a producer of a queue of the worker's namespace (docs/queues.md).

`queues.consumers` are not bindings (the queue's aggregate holds its consumer); the CLI
reads them from the same table (`queues_table`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventlog import validation as v
from eventlog.bindings.spec import (
    BindingConfigError,
    BindingLike,
    BindingSpec,
    Scope,
    integer,
    string,
    table_list,
)
from eventlog.errors import InvalidEvent


def queues_table(doc: Mapping[str, Any], config: str) -> Mapping[str, Any]:
    queues = doc.get("queues") or {}
    if not isinstance(queues, dict):
        raise BindingConfigError(f"{config}: `queues` must be a table (producers, consumers)")
    unknown = sorted(set(queues) - {"producers", "consumers"})
    if unknown:
        raise BindingConfigError(f"{config}: `queues.{unknown[0]}` is not supported by WDL")
    return queues


def _parse(doc: Mapping[str, Any], config: str) -> list[dict[str, str]]:
    """binding, queue, delivery_delay (seconds; the binding's value)."""
    out: list[dict[str, str]] = []
    for i, p in enumerate(table_list(queues_table(doc, config), "producers", config)):
        where = f"{config}: queues.producers[{i}]"
        delay = integer(p, "delivery_delay", where, 0, v.MAX_DELAY_S)
        out.append({"name": string(p, "binding", where), "kind": "queue",
                    "target": string(p, "queue", where),
                    "value": "" if delay is None else str(delay)})
    return out


def _check(field: str, b: BindingLike) -> None:
    # value: the producer's delivery_delay in seconds ("" for the queue's own).
    v.queue_name(f"{field}.target", b.target)
    if b.value and not (b.value.isdigit() and int(b.value) <= v.MAX_DELAY_S):
        raise InvalidEvent(f"{field}.value", "a queue binding's value is its "
                           f"delivery_delay: seconds, at most {v.MAX_DELAY_S}")


def _props(scope: Scope, b: Mapping[str, Any]) -> dict[str, Any]:
    # Sends go to this namespace's queue only; `delay` is the binding's delivery_delay.
    return {"namespace": scope.namespace, "queue": b["target"], "worker": scope.worker,
            "version": scope.version, "delay": b.get("value", "")}


SPEC = BindingSpec(
    kind="queue", label="queue", check=_check, uses=frozenset({"target", "value"}),
    doc="target: the queue; value: the producer's delivery_delay in seconds",
    wrangler_keys=("queues",), parse=_parse, resource=True, props=_props,
    entrypoint="WdlQueue", module="queues")
