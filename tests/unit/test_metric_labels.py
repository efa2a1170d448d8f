"""Capped tenant labels (services/observability) and the data service's metrics."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.data.app import create_data_app
from services.data.binding_metrics import binding_op
from services.data.invocations import invocation_routes
from services.data.metrics import DURATION_BUCKETS, DataMetrics
from services.observability.labels import OTHER, NamespaceLabels, WorkerLabels

pytestmark = pytest.mark.unit


def test_worker_labels_fold_pairs_past_the_cap() -> None:
    labels = WorkerLabels(2)
    assert labels.labels("a", "x") == ("a", "x")
    assert labels.labels("a", "y") == ("a", "y")
    assert labels.labels("b", "x") == (OTHER, OTHER)
    assert labels.labels("a", "x") == ("a", "x"), "admitted pairs keep their series"
    assert labels.labels("", None) == (OTHER, OTHER)
    assert len(labels.keys) == 2


def test_caps_come_from_the_environment() -> None:
    assert WorkerLabels(env={}).cap == 500
    assert WorkerLabels(env={"WDL_METRICS_MAX_WORKERS": "3"}).cap == 3
    assert NamespaceLabels(env={"WDL_METRICS_MAX_NAMESPACES": "0"}).labels("a") == OTHER
    with pytest.raises(ValueError):
        WorkerLabels(env={"WDL_METRICS_MAX_WORKERS": "-1"})


def test_long_values_are_clipped_and_the_cap_holds_under_threads() -> None:
    labels = NamespaceLabels(50)
    assert labels.labels("n" * 500) == "n" * 64
    threads = [threading.Thread(target=lambda i=i: [labels.labels(f"ns{i}-{j}")
                                                    for j in range(100)]) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(labels.keys) == 50


def sample(m: DataMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


async def test_gateway_invocation_counts_feed_requests_duration_and_exceptions() -> None:
    m = DataMetrics(CollectorRegistry(), workers=WorkerLabels(1))
    app = create_data_app({}, internal_token="t", metrics=m,
                          extra=invocation_routes(m))
    zero = [0] * (len(DURATION_BUCKETS) + 1)
    batch = {"workers": [
        {"namespace": "a", "worker": "w", "requests": [["2xx", "ok", 1], ["none", "exception", 1]],
         "exceptions": 1, "buckets": [0, 0, 0, 0, 1, *zero[5:]], "sum": 0.02},
        {"namespace": "b", "worker": "w", "requests": [["5xx", "weird", 1]],
         "buckets": zero, "sum": 0}], "dropped": 3}
    headers = {"x-wdl-internal-token": "t"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://data") as client:
        assert (await client.post("/invocations", json=batch)).status_code == 401
        assert (await client.post("/invocations", json=batch, headers=headers)).status_code \
            == 204
        bad = {"workers": [{"namespace": "a", "worker": "w", "requests": [["9xx", "ok", 1]]}]}
        assert (await client.post("/invocations", json=bad, headers=headers)).status_code \
            == 400
    assert sample(m, "wdl_worker_requests_total", namespace="a", worker="w",
                  status_class="2xx", outcome="ok") == 1
    assert sample(m, "wdl_worker_requests_total", namespace="a", worker="w",
                  status_class="none", outcome="exception") == 1
    assert sample(m, "wdl_worker_requests_total", namespace=OTHER, worker=OTHER,
                  status_class="5xx", outcome="other") == 1
    assert sample(m, "wdl_worker_exceptions_total", namespace="a", worker="w") == 1
    assert sample(m, "wdl_worker_request_duration_seconds_count", namespace="a",
                  worker="w") == 1
    assert sample(m, "wdl_worker_request_duration_seconds_bucket", namespace="a",
                  worker="w", le="0.025") == 1
    assert sample(m, "wdl_worker_request_duration_seconds_bucket", namespace="a",
                  worker="w", le="0.01") == 0
    assert sample(m, "wdl_worker_request_duration_seconds_sum", namespace="a",
                  worker="w") == pytest.approx(0.02)
    assert sample(m, "wdl_gateway_invocations_dropped_total") == 3


@pytest.mark.parametrize(("path", "method", "expected"), [
    ("/kv/acme/cache/v/some/key", "GET", ("kv", "acme", "get")),
    ("/kv/acme/cache/v/k", "PUT", ("kv", "acme", "put")),
    ("/kv/acme/cache/bulk", "POST", ("kv", "acme", "get_bulk")),
    ("/kv/acme/cache/keys", "GET", ("kv", "acme", "list")),
    ("/r2/acme/files/mpu/part", "PUT", ("r2", "acme", "mpu/part")),
    ("/r2/acme/files/get", "POST", ("r2", "acme", "get")),
    ("/r2/acme/files/zzz", "POST", ("r2", "acme", "other")),
    ("/tail", "POST", None), ("/kv/acme", "GET", None), ("/egress/refused", "POST", None),
])
def test_binding_ops_are_named_from_the_path(path: str, method: str, expected: Any) -> None:
    assert binding_op(path, method) == expected


async def test_the_data_app_counts_binding_calls_errors_and_egress_refusals() -> None:
    async def kv_get(request: Request) -> Response:
        key = request.path_params["key"]
        if key == "absent":
            return Response(status_code=404, headers={"x-kv-missing": "1"})
        if key == "gone":
            return JSONResponse({"code": "kv_namespace_not_found", "message": "m"}, 404)
        return Response(b"v")

    async def r2_put(request: Request) -> Response:
        return JSONResponse({"error": {"code": "EntityTooLarge", "message": "m"}}, 413)

    m = DataMetrics(CollectorRegistry(), namespaces=NamespaceLabels(1))
    app = create_data_app({"kv": [Route("/{ns}/{res}/v/{key:path}", kv_get)],
                           "r2": [Route("/{ns}/{bucket}/put", r2_put, methods=["PUT"])]},
                          internal_token="t", metrics=m)
    headers = {"x-wdl-internal-token": "t"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://data") as client:
        for key in ("k", "absent", "gone"):
            await client.get(f"/kv/acme/c/v/{key}", headers=headers)
        await client.put("/r2/other/b/put", content=b"x", headers=headers)
        await client.post("/egress/refused", json={"namespace": "acme"}, headers=headers)
        await client.post("/egress/refused", json={"namespace": "acme", "kind": "connect",
                                                   "policy": "allow", "reason": "port"},
                          headers=headers)
        await client.post("/egress/refused", json={"namespace": "acme", "kind": "connect",
                                                   "policy": "x" * 99, "reason": "x" * 99},
                          headers=headers)
        assert (await client.get("/kv/acme/c/v/k")).status_code == 401, "token required"
        assert (await client.get("/metrics")).status_code == 401, "token required"
        # Scrapers send the token as a bearer token.
        text = (await client.get("/metrics", headers={"authorization": "Bearer t"})).text
    assert sample(m, "wdl_binding_operations_total", namespace="acme", kind="kv",
                  op="get") == 3
    assert sample(m, "wdl_binding_errors_total", namespace="acme", kind="kv", op="get",
                  code="kv_namespace_not_found") == 1
    assert sample(m, "wdl_binding_errors_total", namespace=OTHER, kind="r2", op="put",
                  code="EntityTooLarge") == 1
    assert sample(m, "wdl_egress_refusals_total", namespace="acme") == 1
    assert sample(m, "wdl_egress_socket_refusals_total", namespace="acme", policy="allow",
                  reason="port") == 1
    assert sample(m, "wdl_egress_socket_refusals_total", namespace="acme", policy="other",
                  reason="other") == 1, "odd values stay bounded"
    assert 'wdl_binding_operations_total{kind="kv",namespace="acme",op="get"} 3.0' in text
