"""Tokens and namespaces: a namespace token never reads or acts on another namespace.

Outside its scope a namespace answers exactly like one that does not exist
(404 `namespace_not_found`), so nothing about other tenants leaks; observers
cannot write; revoked tokens are refused; the bootstrap admin token works.
Every refusal leaves the log as it was.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventlog.kafka import KafkaEventLog, KafkaSettings
from harness.endpoints import Endpoints
from services.api.launcher import ControlStack, stack_env
from services.crypto.rootkey import RootKey


@pytest.fixture
def stack(services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
          tmp_path: Path) -> Iterator[ControlStack]:
    env = stack_env(services.as_env(), topic=unique_name("auth"), partitions=4,
                    redis_prefix=f"{unique_name('t')}:", database_url=fresh_database,
                    bucket=unique_name("b"), admin_token=f"adm-{secrets.token_hex(16)}",
                    root_keys=RootKey.generate().export())
    with ControlStack(env, tmp_path / "procs") as s:
        yield s


def log_end(stack: ControlStack) -> dict[int, int]:
    async def ends() -> dict[int, int]:
        async with KafkaEventLog(KafkaSettings(
                bootstrap_servers=stack.env["KAFKA_BOOTSTRAP_SERVERS"],
                topic=stack.env["WDL_TOPIC"])) as log:
            return await log.end_positions()

    return asyncio.run(ends())


CODE = base64.b64encode(b"export default { fetch() { return new Response('x') } }").decode()
DEPLOY = {"main_module": "index.js", "compatibility_date": "2025-06-01",
          "modules": [{"name": "index.js", "content_b64": CODE}]}


def namespace_requests(ns: str, version: str, event_id: str) -> list[tuple[str, str, Any]]:
    w = f"/v1/namespaces/{ns}/workers/api"
    return [
        ("GET", f"/v1/namespaces/{ns}", None),
        ("GET", f"/v1/namespaces/{ns}/workers", None),
        ("GET", w, None),
        ("GET", f"{w}/versions", None),
        ("GET", f"{w}/versions/{version}", None),
        ("GET", f"{w}/history", None),
        ("GET", f"{w}/secrets", None),
        ("GET", f"/v1/namespaces/{ns}/secrets", None),
        ("GET", f"/v1/namespaces/{ns}/hosts", None),
        ("GET", f"/v1/audit?namespace={ns}", None),
        ("POST", f"{w}/versions?promote=true", DEPLOY),
        ("POST", f"{w}/promote", {"version_id": version}),
        ("POST", f"{w}/rollback", {}),
        ("DELETE", f"{w}/versions/{version}", None),
        ("DELETE", w, None),
        ("POST", f"{w}/purge", None),
        ("PUT", f"{w}/secrets/KEY", {"value": "v"}),
        ("DELETE", f"{w}/secrets/KEY", None),
        ("PUT", f"/v1/namespaces/{ns}/secrets/KEY", {"value": "v"}),
        ("DELETE", f"/v1/namespaces/{ns}/secrets/KEY", None),
        ("POST", f"/v1/namespaces/{ns}/hosts", {"pattern": f"{ns}.example.com"}),
        ("DELETE", f"/v1/namespaces/{ns}/hosts/{ns}.example.com", None),
    ]


def call(http: httpx.Client, token: str | None, method: str, path: str,
         body: Any = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return http.request(method, path, json=body, headers=headers)


def test_namespace_tokens_are_confined_to_their_namespaces(stack: ControlStack) -> None:
    admin = stack.admin_token
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        setup: dict[str, tuple[str, str]] = {}
        for ns in ("alpha", "beta"):
            assert call(http, admin, "POST", "/v1/namespaces", {"name": ns}).status_code == 201
            r = call(http, admin, "POST", f"/v1/namespaces/{ns}/workers/api/versions", DEPLOY)
            assert r.status_code == 201
            version = r.json()["version_id"]
            assert call(http, admin, "PUT", f"/v1/namespaces/{ns}/workers/api/secrets/KEY",
                        {"value": "s"}).status_code == 200
            r = call(http, admin, "POST", f"/v1/namespaces/{ns}/hosts",
                     {"pattern": f"{ns}.example.com", "worker": "api"})
            assert r.status_code == 200
            setup[ns] = (version, r.json()["event_id"])

        def issue(role: str, namespaces: list[str]) -> dict[str, Any]:
            r = call(http, admin, "POST", "/v1/tokens", {"role": role, "namespaces": namespaces})
            assert r.status_code == 201, r.text
            return dict(r.json())

        deployer = issue("deployer", ["alpha"])["token"]
        observer = issue("observer", ["alpha"])["token"]
        before = log_end(stack)

        # Every read and write of beta looks exactly like a namespace that does not exist.
        beta_version, beta_event = setup["beta"]
        for token in (deployer, observer):
            for (method, path, body), (_, ghost_path, _) in zip(
                    namespace_requests("beta", beta_version, beta_event),
                    namespace_requests("gamma", beta_version, beta_event), strict=True):
                r = call(http, token, method, path, body)
                ghost = call(http, token, method, ghost_path, body)
                assert r.status_code == 404, (method, path, r.text)
                assert r.json()["error"]["code"] == "namespace_not_found", (method, path)
                assert (ghost.status_code, ghost.json()["error"]["code"]) == (
                    404, "namespace_not_found"), (method, ghost_path)
            r = call(http, token, "GET", f"/v1/events/{beta_event}")
            assert (r.status_code, r.json()["error"]["code"]) == (404, "event_not_found")
            names = [n["name"] for n in call(http, token, "GET", "/v1/namespaces").json()]
            assert names == ["alpha"]
            rows = call(http, token, "GET", "/v1/audit").json()["items"]
            assert rows and {row["namespace"] for row in rows} == {"alpha"}
            for method, path, body in [("GET", "/v1/tokens", None), ("GET", "/v1/leases", None),
                                       ("POST", "/v1/namespaces", {"name": "delta"}),
                                       ("POST", "/v1/tokens", {"role": "admin"}),
                                       ("POST", "/v1/leases/owner/beta/takeover",
                                        {"holder": "me"})]:
                r = call(http, token, method, path, body)
                assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden"), path

        # The observer reads its namespace but changes nothing in it.
        alpha_version, alpha_event = setup["alpha"]
        for method, path, body in namespace_requests("alpha", alpha_version, alpha_event):
            r = call(http, observer, method, path, body)
            if method == "GET":
                assert r.status_code == 200, (path, r.text)
            else:
                assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden"), path
        assert call(http, observer, "GET", f"/v1/events/{alpha_event}").status_code == 200
        assert log_end(stack) == before  # not one refused request reached the log

        # The deployer acts on its own namespace.
        r = call(http, deployer, "POST", "/v1/namespaces/alpha/workers/api/promote",
                 {"version_id": alpha_version})
        assert r.status_code == 200 and r.json()["verdict"]["accepted"]

        # Revoked tokens stop working; unknown and missing tokens never worked.
        victim = issue("deployer", ["alpha"])
        assert call(http, victim["token"], "GET", "/v1/whoami").status_code == 200
        r = call(http, admin, "DELETE", f"/v1/tokens/{victim['token_id']}")
        assert r.status_code == 200, r.text
        for token in (victim["token"], None, "wdl_tnope_nope", "garbage", admin + "x"):
            r = call(http, token, "GET", "/v1/namespaces/alpha/workers")
            assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthenticated")
        listed = {t["token_id"]: t for t in call(http, admin, "GET", "/v1/tokens").json()}
        assert listed[victim["token_id"]]["revoked_at"] is not None
        assert "token" not in listed[victim["token_id"]]

        # The bootstrap admin reads and writes everywhere.
        for ns in ("alpha", "beta"):
            assert call(http, admin, "GET", f"/v1/namespaces/{ns}/workers").status_code == 200
        r = call(http, admin, "POST", "/v1/leases/owner/beta/takeover", {"holder": "operator"})
        assert r.status_code == 200 and r.json()["verdict"]["accepted"]
        r = call(http, admin, "POST", "/v1/leases/owner/beta/takeover",
                 {"holder": "operator2", "expected_generation": 0})
        assert (r.status_code, r.json()["error"]["code"]) == (409, "stale_generation")
        lease = call(http, admin, "GET", "/v1/leases/owner/beta").json()
        assert (lease["holder"], lease["generation"]) == ("operator", 1)
        # A pattern held by another namespace is a verdict, even for an admin.
        r = call(http, admin, "POST", "/v1/namespaces/alpha/hosts",
                 {"pattern": "beta.example.com"})
        assert (r.status_code, r.json()["error"]["code"]) == (409, "host_claimed")
