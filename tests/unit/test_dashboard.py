"""The Grafana dashboard only queries documented metrics, and docs/metrics.md is true:
the data service's metrics are registered by its code, every other documented one
is defined somewhere in the sources."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.data.metrics import DataMetrics

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana" / "wdl-dashboard.json"
DOC = (ROOT / "docs" / "metrics.md").read_text()
METRIC = re.compile(r"\bwdl_[a-z0-9_]+\b")
SUFFIXES = ("_bucket", "_sum", "_count")


def _queries(node: Any) -> Iterator[str]:
    """Every PromQL string of the dashboard: panel targets (rows nest panels) and
    template variable queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, str | dict):
                yield value if isinstance(value, str) else str(value.get("query", ""))
            else:
                yield from _queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _queries(item)


def _base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _documented(section: str | None = None) -> set[str]:
    text = DOC
    if section is not None:
        start = DOC.index(f"## {section}\n")
        end = DOC.find("\n## ", start + 1)
        text = DOC[start:end if end >= 0 else None]
    return set(re.findall(r"^\| `(wdl_[a-z0-9_]+)` \|", text, re.M))


def _registered(registry: CollectorRegistry) -> set[str]:
    names = set()
    for family in registry.collect():
        names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def dashboard_metrics() -> set[str]:
    doc = json.loads(DASHBOARD.read_text())
    return {_base(m) for q in _queries(doc) for m in METRIC.findall(q)}


def test_the_dashboard_has_panels_with_queries() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert len(doc["panels"]) >= 10
    assert all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in doc["panels"])
    assert {"wdl_worker_requests_total", "wdl_gateway_watchdog_kills_total",
            "wdl_gateway_workerd_restarts_total", "wdl_namespace_holds_total"} <= \
        dashboard_metrics()


def test_every_metric_of_the_dashboard_is_documented() -> None:
    missing = dashboard_metrics() - _documented()
    assert not missing, f"not in docs/metrics.md: {sorted(missing)}"


def test_the_data_service_metrics_are_registered_as_documented() -> None:
    registered = _registered(DataMetrics(CollectorRegistry()).registry)
    assert _documented("Data service") == registered


def test_every_documented_metric_is_defined_in_the_sources() -> None:
    sources = "\n".join(p.read_text() for package in ("services", "projections")
                        for p in (ROOT / package).rglob("*.py"))
    undefined = sorted(m for m in _documented()
                       if f'"{m}"' not in sources and f'"{m.removesuffix("_total")}"'
                       not in sources)
    assert not undefined, f"documented but defined nowhere: {undefined}"
