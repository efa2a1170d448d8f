"""Property-based run of the published OpenAPI schema: no input yields a 5xx.

Against the embedded stack (SQLite log, in-process projection, SQLite audit,
local blobs) served by a real uvicorn on a loopback port, with the bootstrap
admin token so every operation is reachable; a bounded number of examples
per operation.

The API runs alone, without the workflows engine its /workflows routes proxy
to: their 503 `workflows_unavailable` says so and is the one 5xx allowed (it is
about the deployment, not the input); every other answer of theirs still counts.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from services.api.launcher import ApiProcess
from services.crypto.rootkey import RootKey
from tests.dns import dns_server

_BACKEND_VARS = ("REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")


@pytest.fixture(scope="module")
def embedded_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    workdir = tmp_path_factory.mktemp("embedded")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("WDL_") and k not in _BACKEND_VARS}
    env.update({"WDL_DATA_DIR": str(workdir / "data"), "WDL_PARTITIONS": "4",
                "WDL_ADMIN_TOKEN": f"adm-{secrets.token_hex(16)}",
                "WDL_ROOT_KEYS": RootKey.generate().export(), "PYTHONUNBUFFERED": "1"})
    # Host proofs are looked up on a DNS server on loopback, never the machine's resolver.
    with dns_server() as (_, resolver):
        env["WDL_DNS_RESOLVER"] = resolver
        yield from _serve(env, workdir)


def _serve(env: dict[str, str], workdir: Path) -> Iterator[ApiProcess]:
    api = ApiProcess(env, Path(workdir) / "api.log", projector=True)
    with api:
        headers = {"Authorization": f"Bearer {env['WDL_ADMIN_TOKEN']}"}
        code = base64.b64encode(b"export default { fetch() { return new Response('') } }")
        with httpx.Client(base_url=api.url, headers=headers, timeout=30) as http:
            # Something real to hit: schemathesis favours short names like "0" and "a".
            for ns in ("a", "0"):
                assert http.post("/v1/namespaces", json={"name": ns}).status_code == 201
                r = http.post(f"/v1/namespaces/{ns}/workers/a/versions?promote=true", json={
                    "main_module": "index.js", "compatibility_date": "2025-06-01",
                    "modules": [{"name": "index.js", "content_b64": code.decode()}]})
                assert r.status_code == 201, r.text
        yield api
        log = api.log_text()
    assert "unhandled" not in log, log[-5000:]


def _engine_absent(response: Any) -> bool:
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return False
    return bool(response.status_code == 503 and code == "workflows_unavailable"
                and "/workflows" in response.request.url)


def test_no_input_yields_a_server_error(embedded_api: ApiProcess) -> None:
    # Operations are driven one by one with hypothesis (schemathesis' pytest
    # plugin does not run under this pytest version).
    schema = schemathesis.openapi.from_url(f"{embedded_api.url}/openapi.json")
    headers = {"Authorization": f"Bearer {embedded_api.env['WDL_ADMIN_TOKEN']}"}
    failures: list[str] = []
    statuses: list[int] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            response = case.call(headers=headers, timeout=30)
            statuses.append(response.status_code)
            if response.status_code >= 500 and not _engine_absent(response):
                failures.append(f"{case.method} {case.formatted_path} -> "
                                f"{response.status_code}: {response.text[:300]}")

        run()
    assert operations >= 30
    assert len(statuses) >= operations * 5
    assert any(200 <= s < 300 for s in statuses)
    assert failures == []
