"""The pooler's metrics (docs/metrics.md "Hyperdrive pooler"), in a registry the
Hyperdrive component owns.

Pool state comes from PgBouncer's admin console (`SHOW POOLS`, `SHOW STATS`; see
services/hyperdrive/console.py). PgBouncer reports per database alias, `hd_<config id>`:
the aggregation here folds its rows into the alias's **namespace** (bounded by
`NamespaceLabels`, docs/metrics.md "Bounded tenant labels"). A config id, a database or
user name, an origin host: none of them is ever a label value, since a config id is the
binding's credential-bearing name and origins are the tenant's private network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.observability.labels import NamespaceLabels


@dataclass
class PoolState:
    """One namespace's pools, summed (maxwait: the longest of them)."""

    clients_active: int = 0
    clients_waiting: int = 0
    servers_active: int = 0
    servers_idle: int = 0
    servers_used: int = 0
    maxwait_seconds: float = 0.0


# SHOW STATS's cumulative columns -> the counter each feeds.
STAT_COLUMNS = ("total_query_count", "total_xact_count", "total_wait_time")


def _int(row: Mapping[str, Any], key: str) -> int:
    value = row.get(key)
    try:
        return int(value) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def aggregate_pools(rows: Iterable[Mapping[str, Any]], namespace_of: Mapping[str, str],
                    labels: NamespaceLabels) -> dict[str, PoolState]:
    """`SHOW POOLS` rows -> namespace label -> its pools' state. Every namespace with a
    served config is present (0 when no client came yet: PgBouncer makes a pool at the
    first login); rows of other databases (the console's own `pgbouncer`) are dropped."""
    out: dict[str, PoolState] = {}
    for ns in sorted(set(namespace_of.values())):
        out.setdefault(labels.labels(ns), PoolState())
    for row in rows:
        owner = namespace_of.get(str(row.get("database")))
        if owner is None:
            continue
        state = out.setdefault(labels.labels(owner), PoolState())
        state.clients_active += _int(row, "cl_active")
        state.clients_waiting += _int(row, "cl_waiting")
        state.servers_active += _int(row, "sv_active")
        state.servers_idle += _int(row, "sv_idle")
        state.servers_used += _int(row, "sv_used")
        wait = _int(row, "maxwait") + _int(row, "maxwait_us") / 1_000_000
        state.maxwait_seconds = max(state.maxwait_seconds, wait)
    return out


class StatDeltas:
    """`SHOW STATS`'s cumulative per-database totals -> increments per namespace.

    A total can only be turned into a counter by its increase: it restarts at 0 when
    PgBouncer restarts, and a deleted config's row disappears (a sum over rows would go
    down). A total below the last one seen is a restart: all of it is new."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], int] = {}

    def feed(self, rows: Iterable[Mapping[str, Any]], namespace_of: Mapping[str, str],
             labels: NamespaceLabels) -> dict[tuple[str, str], int]:
        """(namespace label, column) -> increase since the last call."""
        seen: dict[tuple[str, str], int] = {}
        out: dict[tuple[str, str], int] = {}
        for row in rows:
            database = str(row.get("database"))
            ns = namespace_of.get(database)
            if ns is None:
                continue
            label = labels.labels(ns)
            for column in STAT_COLUMNS:
                total = _int(row, column)
                last = self._last.get((database, column), 0)
                seen[(database, column)] = total
                delta = total - last if total >= last else total
                if delta:
                    out[(label, column)] = out.get((label, column), 0) + delta
        self._last = seen  # a database gone is forgotten (its id may come back: from 0)
        return out


class HyperdriveMetrics:
    def __init__(self, registry: CollectorRegistry | None = None,
                 labels: NamespaceLabels | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.labels = labels if labels is not None else NamespaceLabels()
        r = self.registry
        self.configs = Gauge("wdl_hyperdrive_configs", "Hyperdrive configs the pooler serves",
                             registry=r)
        self.unopened = Gauge("wdl_hyperdrive_configs_unopened",
                              "configs left out: their sealed values could not be opened",
                              registry=r)
        self.reloads = Counter("wdl_hyperdrive_reloads_total",
                               "PgBouncer reloads (SIGHUP) after the configs changed",
                               registry=r)
        self.restarts = Counter("wdl_hyperdrive_restarts_total",
                                "PgBouncer processes started again after one exited",
                                registry=r)
        self.console_up = Gauge("wdl_hyperdrive_console_up",
                                "1 when the last poll of PgBouncer's admin console answered",
                                registry=r)
        self.console_failures = Counter("wdl_hyperdrive_console_failures_total",
                                        "polls of PgBouncer's admin console that failed or "
                                        "timed out", registry=r)
        ns = ["namespace"]
        self.pool = {
            "clients_active": Gauge("wdl_hyperdrive_clients_active",
                                    "client connections linked to a server connection",
                                    ns, registry=r),
            "clients_waiting": Gauge("wdl_hyperdrive_clients_waiting",
                                     "client connections waiting for a server connection",
                                     ns, registry=r),
            "servers_active": Gauge("wdl_hyperdrive_servers_active",
                                    "origin connections linked to a client", ns, registry=r),
            "servers_idle": Gauge("wdl_hyperdrive_servers_idle",
                                  "origin connections idle and ready", ns, registry=r),
            "servers_used": Gauge("wdl_hyperdrive_servers_used",
                                  "origin connections idle, to be checked before reuse",
                                  ns, registry=r),
            "maxwait_seconds": Gauge("wdl_hyperdrive_clients_maxwait_seconds",
                                     "how long the oldest waiting client has waited",
                                     ns, registry=r),
        }
        self.totals = {
            "total_query_count": Counter("wdl_hyperdrive_queries_total",
                                         "queries the pooler ran for the namespace's clients",
                                         ns, registry=r),
            "total_xact_count": Counter("wdl_hyperdrive_transactions_total",
                                        "transactions the pooler ran (outside a transaction, "
                                        "each query counts as one)", ns, registry=r),
            "total_wait_time": Counter("wdl_hyperdrive_client_wait_seconds_total",
                                       "time the namespace's clients spent waiting for a "
                                       "server connection", ns, registry=r),
        }
        self._stats = StatDeltas()
        self._shown: set[str] = set()

    def observe(self, pools: Iterable[Mapping[str, Any]], stats: Iterable[Mapping[str, Any]],
                namespace_of: Mapping[str, str]) -> None:
        """One poll of the console: the gauges replaced, the counters advanced."""
        state = aggregate_pools(pools, namespace_of, self.labels)
        for gone in self._shown - state.keys():  # a namespace without configs any more
            for gauge in self.pool.values():
                gauge.remove(gone)
        for label, values in state.items():
            for f in fields(PoolState):
                self.pool[f.name].labels(label).set(getattr(values, f.name))
        self._shown = set(state)
        for (label, column), delta in self._stats.feed(stats, namespace_of,
                                                       self.labels).items():
            # total_wait_time is in microseconds.
            amount = delta / 1_000_000 if column == "total_wait_time" else delta
            self.totals[column].labels(label).inc(amount)
