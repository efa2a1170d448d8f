"""The pooler's metrics from PgBouncer's console rows (pure): per namespace, bounded,
never per config; cumulative totals turned into counters across restarts and deletes."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from services.hyperdrive.metrics import (
    HyperdriveMetrics,
    PoolState,
    StatDeltas,
    aggregate_pools,
)
from services.hyperdrive.pgbouncer import listen_addresses
from services.observability.labels import NamespaceLabels
from tests.unit.test_dashboard import _documented, _registered

pytestmark = pytest.mark.unit

A1, A2, B1 = "hd_" + "a" * 32, "hd_" + "1" * 32, "hd_" + "b" * 32
OWNERS = {A1: "acme", A2: "acme", B1: "beta"}


def pool(database: str, **kw: Any) -> dict[str, Any]:
    # SHOW POOLS of PgBouncer 1.18: every column, as psycopg's dict_row gives them.
    row: dict[str, Any] = {
        "database": database, "user": database, "cl_active": 0, "cl_waiting": 0,
        "cl_active_cancel_req": 0, "cl_waiting_cancel_req": 0, "sv_active": 0,
        "sv_active_cancel": 0, "sv_being_canceled": 0, "sv_idle": 0, "sv_used": 0,
        "sv_tested": 0, "sv_login": 0, "maxwait": 0, "maxwait_us": 0, "pool_mode": "session"}
    row.update(kw)
    return row


def test_pools_fold_into_their_namespace_and_the_console_is_dropped() -> None:
    rows = [pool(A1, cl_active=2, sv_active=2, sv_idle=1),
            pool(A2, cl_active=1, cl_waiting=3, sv_active=1, sv_used=2, maxwait=1,
                 maxwait_us=500_000),
            pool(B1, cl_active=4, maxwait=0, maxwait_us=250_000),
            pool("pgbouncer", user="pgbouncer", cl_active=1),  # the console itself
            pool("hd_" + "f" * 32, cl_active=9)]  # a config no longer served: not counted
    got = aggregate_pools(rows, OWNERS, NamespaceLabels(10))
    assert got == {
        "acme": PoolState(clients_active=3, clients_waiting=3, servers_active=3,
                          servers_idle=1, servers_used=2, maxwait_seconds=1.5),
        "beta": PoolState(clients_active=4, maxwait_seconds=0.25)}


def test_every_served_namespace_shows_even_before_its_first_client() -> None:
    assert aggregate_pools([], OWNERS, NamespaceLabels(10)) == {
        "acme": PoolState(), "beta": PoolState()}


def test_namespaces_past_the_cap_share_other() -> None:
    owners = {f"hd_{i:032x}": f"ns{i}" for i in range(5)}
    rows = [pool(db, cl_active=1, maxwait=i) for i, db in enumerate(owners)]
    got = aggregate_pools(rows, owners, NamespaceLabels(2))
    assert set(got) == {"ns0", "ns1", "_other"}
    assert got["_other"].clients_active == 3 and got["_other"].maxwait_seconds == 4


def test_garbled_values_count_as_zero() -> None:
    got = aggregate_pools([pool(A1, cl_active=None, sv_idle="x")], OWNERS, NamespaceLabels(5))
    assert got["acme"] == PoolState()


def stat(database: str, queries: int, xacts: int = 0, wait_us: int = 0) -> dict[str, Any]:
    return {"database": database, "total_xact_count": xacts, "total_query_count": queries,
            "total_received": 0, "total_sent": 0, "total_xact_time": 0,
            "total_query_time": 0, "total_wait_time": wait_us}


def test_totals_become_increases_across_restart_and_delete() -> None:
    deltas, labels = StatDeltas(), NamespaceLabels(10)
    assert deltas.feed([stat(A1, 5, 2), stat(B1, 1)], OWNERS, labels) == {
        ("acme", "total_query_count"): 5, ("acme", "total_xact_count"): 2,
        ("beta", "total_query_count"): 1}
    # Two configs of acme add up; nothing new in beta: no entry.
    assert deltas.feed([stat(A1, 7, 2), stat(A2, 3), stat(B1, 1)], OWNERS, labels) == {
        ("acme", "total_query_count"): 5}
    # A2 deleted (its row gone): acme's counter does not go back.
    assert deltas.feed([stat(A1, 8, 2), stat(B1, 1)], OWNERS, labels) == {
        ("acme", "total_query_count"): 1}
    # PgBouncer restarted: totals from 0 again, all of it is new.
    assert deltas.feed([stat(A1, 2, 1), stat(B1, 0, wait_us=40)], OWNERS, labels) == {
        ("acme", "total_query_count"): 2, ("acme", "total_xact_count"): 1,
        ("beta", "total_wait_time"): 40}


def sample(text: str, name: str, ns: str | None = None) -> float | None:
    key = f'{name}{{namespace="{ns}"}} ' if ns else f"{name} "
    for line in text.splitlines():
        if line.startswith(key):
            return float(line.split()[-1])
    return None


def test_observe_sets_gauges_advances_counters_and_forgets_gone_namespaces() -> None:
    m = HyperdriveMetrics(CollectorRegistry(), NamespaceLabels(10))
    m.observe([pool(A1, cl_active=2, sv_active=2), pool(B1, cl_waiting=1, maxwait=3)],
              [stat(A1, 10, 4, wait_us=1_500_000), stat(B1, 2)], OWNERS)
    text = generate_latest(m.registry).decode()
    assert sample(text, "wdl_hyperdrive_clients_active", "acme") == 2
    assert sample(text, "wdl_hyperdrive_servers_active", "acme") == 2
    assert sample(text, "wdl_hyperdrive_clients_waiting", "beta") == 1
    assert sample(text, "wdl_hyperdrive_clients_maxwait_seconds", "beta") == 3
    assert sample(text, "wdl_hyperdrive_queries_total", "acme") == 10
    assert sample(text, "wdl_hyperdrive_client_wait_seconds_total", "acme") == 1.5
    # Never a config id, a database alias or a user in the text.
    assert "hd_" not in text and "a" * 32 not in text
    # beta's only config deleted: its gauges go, its counters stay.
    m.observe([pool(A1, cl_active=1)], [stat(A1, 11, 4, wait_us=1_500_000)], {A1: "acme"})
    text = generate_latest(m.registry).decode()
    assert sample(text, "wdl_hyperdrive_clients_active", "acme") == 1
    assert sample(text, "wdl_hyperdrive_clients_waiting", "beta") is None
    assert sample(text, "wdl_hyperdrive_queries_total", "beta") == 2
    assert sample(text, "wdl_hyperdrive_queries_total", "acme") == 11


def test_documented_as_registered() -> None:
    registered = _registered(HyperdriveMetrics(CollectorRegistry()).registry)
    assert _documented("Hyperdrive pooler") == registered


@pytest.mark.parametrize(("host", "listen"), [
    ("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "0.0.0.0"), ("*", "*"),
    ("10.1.2.3", "10.1.2.3,127.0.0.1")])
def test_the_console_is_reachable_on_loopback(host: str, listen: str) -> None:
    assert listen_addresses(host) == listen
