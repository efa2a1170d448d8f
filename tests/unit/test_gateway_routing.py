"""The gateway's JS routing and the state service's Python routing agree, case by case."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from eventlog.hostnames import reserved_reason
from services.dataplane.config import workerd_dir
from services.state.routing import HostClaim, NoTarget, Target, index_claims, resolve_target

CLAIMS = [
    HostClaim("www.acme.test", "acme", "site", "exact"),
    HostClaim("acme.test/api", "acme", "api", "exact"),
    HostClaim("apps.acme.test", "acme", None, "prefix"),
    HostClaim("apps.acme.test/admin/", "acme", "admin", "prefix"),
    HostClaim("other.test", "other", None, "exact"),
    # One owner, several patterns: the most specific wins, the bare host takes the rest.
    HostClaim("shop.acme.test", "acme", "shop", "exact"),
    HostClaim("shop.acme.test/api/", "acme", "api", "prefix"),
    HostClaim("shop.acme.test/api/health", "acme", "health", "exact"),
    # A table written before host ownership (docs/hosts.md): other namespaces' claims
    # under a host whose bare host the victim holds never route...
    HostClaim("vault.victim.test", "victim", "vault", "exact"),
    HostClaim("vault.victim.test/", "evil", "x", "prefix"),
    HostClaim("vault.victim.test/login", "evil", "x", "exact"),
    # ...and a host whose claims name two namespaces, none holding the bare host, fails
    # closed.
    HostClaim("split.example.test/a", "one", "w", "exact"),
    HostClaim("split.example.test/b", "two", "w", "prefix"),
    # Platform names in the table (claims accepted before the rules) route nothing.
    HostClaim("127.0.0.1", "evil", "x", "prefix"),
    HostClaim("0.0.0.0", "evil", "x", "exact"),
    HostClaim("127.1", "evil", "x", "exact"),
    HostClaim("localhost", "evil", "x", "prefix"),
    HostClaim("printer.local", "evil", "x", "exact"),
    HostClaim("gateway", "evil", "x", "exact"),
    HostClaim("workers.local", "evil", "x", "prefix"),
    HostClaim("victim.workers.local", "evil", "x", "exact"),
    HostClaim("metadata.google.internal", "evil", "x", "exact"),
]

CASES = [
    ("acme.workers.local", "/hello/a/b", ("acme", "hello", "/a/b")),
    ("acme.workers.local", "/hello", ("acme", "hello", "/")),
    ("acme.workers.local", "/hello/", ("acme", "hello", "/")),
    ("ACME.Workers.Local:8080", "/hello/x", ("acme", "hello", "/x")),
    ("acme.workers.local.", "/hello/x", ("acme", "hello", "/x")),
    ("acme.workers.local", "/", "no_worker"),
    ("a.b.workers.local", "/w/", "unknown_host"),
    ("workers.local", "/w/", "unknown_host"),
    ("WORKERS.LOCAL.:443", "/w/", "unknown_host"),
    ("victim.workers.local", "/vault/", ("victim", "vault", "/")),
    ("www.acme.test", "/docs", ("acme", "site", "/docs")),
    ("acme.test", "/api", ("acme", "api", "/api")),
    ("acme.test", "/api/v2", "unknown_host"),
    ("apps.acme.test", "/shop/cart", ("acme", "shop", "/cart")),
    ("apps.acme.test", "/admin/users", ("acme", "admin", "/admin/users")),
    ("apps.acme.test", "/", "no_worker"),
    ("apps.acme.testing", "/shop/", "unknown_host"),
    ("other.test", "/w/x", ("other", "w", "/x")),
    ("nobody.test", "/w/", "unknown_host"),
    ("shop.acme.test", "/", ("acme", "shop", "/")),
    ("shop.acme.test", "/cart", ("acme", "shop", "/cart")),
    ("shop.acme.test", "/api/v1", ("acme", "api", "/api/v1")),
    ("shop.acme.test", "/api/health", ("acme", "health", "/api/health")),
    ("shop.acme.test", "/api/health/x", ("acme", "api", "/api/health/x")),
    ("vault.victim.test", "/", ("victim", "vault", "/")),
    ("vault.victim.test", "/login", ("victim", "vault", "/login")),
    ("VAULT.victim.test.:443", "/login/x", ("victim", "vault", "/login/x")),
    ("split.example.test", "/a", "unknown_host"),
    ("split.example.test", "/b/c", "unknown_host"),
    ("127.0.0.1", "/", "unknown_host"),
    ("127.0.0.1:8080", "/evil/", "unknown_host"),
    ("0.0.0.0", "/", "unknown_host"),
    ("127.1", "/", "unknown_host"),
    ("2130706433", "/", "unknown_host"),
    ("0x7f.1", "/", "unknown_host"),
    ("[::1]:8080", "/", "unknown_host"),
    ("[::ffff:127.0.0.1]", "/", "unknown_host"),
    ("::1", "/", "unknown_host"),
    ("localhost", "/x", "unknown_host"),
    ("LOCALHOST.:8080", "/x", "unknown_host"),
    ("printer.local", "/", "unknown_host"),
    ("gateway", "/", "unknown_host"),
    ("metadata.google.internal", "/", "unknown_host"),
]
TABLE = index_claims(CLAIMS)


def python_answer(host: str, path: str) -> object:
    got = resolve_target(host, path, "workers.local", TABLE)
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
               "match": c.match} for c in CLAIMS]
    script = f"""
      const {{ indexClaims, resolveTarget }} = await import({json.dumps(routing.as_uri())});
      const claims = indexClaims({json.dumps(claims)});
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


NAMES = ["127.0.0.1", "0x7f.1", "1.2.3.0x", "2130706433", "[::1]", "::ffff:7f00:1", "localhost",
         "a.localhost", "x.localdomain", "printer.local", "a.internal", "a.intranet",
         "a.private", "a.corp", "a.home", "a.lan", "1.0.0.127.in-addr.arpa", "r.home.arpa",
         "x.onion", "a.invalid", "a.alt", "gateway", "", "www.example.test", "local.example.com",
         "1.2.3.example.com", "xn--bcher-kva.example", "a.testing"]


def test_js_and_python_agree_on_the_names_of_no_tenant() -> None:
    node = shutil.which("node")
    assert node is not None
    routing = workerd_dir() / "gateway" / "routing.js"
    script = f"""
      const {{ reservedReason }} = await import({json.dumps(routing.as_uri())});
      console.log(JSON.stringify({json.dumps(NAMES)}.map((n) => reservedReason(n))));
    """
    done = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True,
                          text=True, timeout=30, check=True)
    python = [reserved_reason(name) for name in NAMES]
    assert json.loads(done.stdout) == python
    assert python.count(None) == 5
