"""The gateway's JS routing and the state service's Python routing agree, case by case."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from services.dataplane.config import workerd_dir
from services.state.routing import HostClaim, NoTarget, Target, resolve_target

CLAIMS = {
    "www.acme.test": HostClaim("www.acme.test", "acme", "site", "exact"),
    "acme.test/api": HostClaim("acme.test/api", "acme", "api", "exact"),
    "apps.acme.test": HostClaim("apps.acme.test", "acme", None, "prefix"),
    "apps.acme.test/admin/": HostClaim("apps.acme.test/admin/", "acme", "admin", "prefix"),
    "other.test": HostClaim("other.test", "other", None, "exact"),
}

CASES = [
    ("acme.workers.local", "/hello/a/b", ("acme", "hello", "/a/b")),
    ("acme.workers.local", "/hello", ("acme", "hello", "/")),
    ("acme.workers.local", "/hello/", ("acme", "hello", "/")),
    ("ACME.Workers.Local:8080", "/hello/x", ("acme", "hello", "/x")),
    ("acme.workers.local.", "/hello/x", ("acme", "hello", "/x")),
    ("acme.workers.local", "/", "no_worker"),
    ("a.b.workers.local", "/w/", "unknown_host"),
    ("workers.local", "/w/", "unknown_host"),
    ("www.acme.test", "/docs", ("acme", "site", "/docs")),
    ("acme.test", "/api", ("acme", "api", "/api")),
    ("acme.test", "/api/v2", "unknown_host"),
    ("apps.acme.test", "/shop/cart", ("acme", "shop", "/cart")),
    ("apps.acme.test", "/admin/users", ("acme", "admin", "/admin/users")),
    ("apps.acme.test", "/", "no_worker"),
    ("apps.acme.testing", "/shop/", "unknown_host"),
    ("other.test", "/w/x", ("other", "w", "/x")),
    ("nobody.test", "/w/", "unknown_host"),
]


def python_answer(host: str, path: str) -> object:
    got = resolve_target(host, path, "workers.local", CLAIMS)
    if isinstance(got, NoTarget):
        return got.code
    assert isinstance(got, Target)
    return (got.namespace, got.worker, got.path)


@pytest.mark.parametrize(("host", "path", "expected"), CASES)
def test_python_routing(host: str, path: str, expected: object) -> None:
    assert python_answer(host, path) == expected


def test_js_routing_matches_python() -> None:
    node = shutil.which("node")
    assert node is not None, "node is required (it installs workerd via npm)"
    routing = workerd_dir() / "gateway" / "routing.js"
    claims = [{"pattern": c.pattern, "namespace": c.namespace, "worker": c.worker,
               "match": c.match} for c in CLAIMS.values()]
    script = f"""
      const {{ resolveTarget }} = await import({json.dumps(routing.as_uri())});
      const claims = new Map({json.dumps(claims)}.map((c) => [c.pattern, c]));
      const cases = {json.dumps([[h, p] for h, p, _ in CASES])};
      const out = cases.map(([h, p]) => {{
        const t = resolveTarget(h, p, "workers.local", claims);
        return t.code ? t.code : [t.namespace, t.worker, t.path];
      }});
      console.log(JSON.stringify(out));
    """
    done = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True,
                          text=True, timeout=30, check=True)
    js = [a if isinstance(a, str) else tuple(a) for a in json.loads(done.stdout)]
    assert js == [python_answer(h, p) for h, p, _ in CASES]
