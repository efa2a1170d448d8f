"""The JS half of a tenant connect()'s egress decision (workerd/gateway/sockets.js):
every spelling of an address normalised, then judged by the rules fetch() uses.

Nothing connects here; the integration and security tests dial real servers through
real workerd (tests/integration/test_sockets.py, tests/security/test_redteam_sockets.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest

from services.dataplane.config import workerd_dir

PUBLIC: dict[str, Any] = {"mode": "public"}
DENY: dict[str, Any] = {"mode": "deny"}
ALLOW: dict[str, Any] = {"mode": "allow", "allow": [
    {"host": "db.example.com", "ports": [5432]},
    {"host": "127.0.0.1", "ports": [7000]},
    {"host": "*.cache.example.org"},
]}

LOOPBACK_SPELLINGS = ["localhost:7000", "LOCALHOST.:7000", "127.0.0.1:7000", "127.1:7000",
                      "0x7f.1:7000", "2130706433:7000", "017700000001:7000",
                      "0177.0.0.1:7000", "[::ffff:127.0.0.1]:7000", "::ffff:127.0.0.1:7000",
                      "[::1]:7000", "[0:0:0:0:0:0:0:1]:7000", "[::127.0.0.1]:7000",
                      "a.localhost:7000"]
OTHER_SPECIALS = ["169.254.169.254:80", "0xa9.0xfe.0xa9.0xfe:80", "[fd00::1]:5432",
                  "10.0.0.5:5432", "192.168.1.1:22", "172.16.0.1:3306", "100.64.0.1:80",
                  "metadata.google.internal:80", "metadata:80", "0.0.0.0:5432",
                  "[fe80::1]:80", "[::ffff:169.254.169.254]:80", "[64:ff9b::a9fe:a9fe]:80"]
MALFORMED = ["db.example.com", "db.example.com:0", "db.example.com:99999",
             "user@db.example.com:5432", "db.example.com/x:5432", "[fe80::1%eth0]:80",
             "%31%32%37.0.0.1:80", "a b:80", ":5432"]


def judge(cases: list[tuple[dict[str, Any], str, bool]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node is not None, "node is required (it installs workerd via npm)"
    module = workerd_dir() / "gateway" / "sockets.js"
    script = f"""
      const {{ socketRefusal, reasonClass }} = await import({json.dumps(module.as_uri())});
      const cases = {json.dumps(cases)};
      console.log(JSON.stringify(cases.map(([p, a, l]) => {{
        const r = socketRefusal(p, a, l);
        return {{ ...r, cls: r.reason ? reasonClass(r.reason) : "" }};
      }})));
    """
    done = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True,
                          text=True, timeout=30, check=True)
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("policy", [PUBLIC, ALLOW], ids=["public", "allow"])
def test_every_loopback_private_and_metadata_spelling_is_refused(
        policy: dict[str, Any]) -> None:
    cases = [(policy, a, False) for a in LOOPBACK_SPELLINGS + OTHER_SPECIALS]
    out = judge(cases)
    allowed = [a for (_, a, _), r in zip(cases, out, strict=True) if not r["reason"]]
    assert allowed == []
    assert {r["cls"] for r in out} == {"special_address"}


def test_spellings_are_normalised_before_the_check() -> None:
    out = judge([(PUBLIC, a, True) for a in ("0x7f.1:7000", "2130706433:7000",
                                             "017700000001:7000", "127.1:7000",
                                             "LOCALHOST.:7000", "::1:7000")])
    assert [r["target"]["host"] for r in out] == ["127.0.0.1"] * 4 + ["localhost", "[::1]"]
    assert all(r["reason"] == "" for r in out), "the operators' loopback setting allows them"


def test_the_loopback_setting_opens_loopback_only() -> None:
    out = judge([(PUBLIC, a, True) for a in OTHER_SPECIALS])
    assert all(r["reason"] for r in out)


def test_allow_lists_match_host_and_port() -> None:
    cases = [(ALLOW, "db.example.com:5432", False), (ALLOW, "DB.example.com.:5432", False),
             (ALLOW, "db.example.com:5433", False), (ALLOW, "other.example.com:5432", False),
             (ALLOW, "a.cache.example.org:6379", False), (ALLOW, "cache.example.org:6379", False),
             (ALLOW, "127.0.0.1:7000", True), (ALLOW, "0x7f.1:7000", True),
             (ALLOW, "127.0.0.1:7001", True), (ALLOW, "localhost:7000", True)]
    out = judge(cases)
    assert [r["cls"] for r in out] == ["", "", "port", "not_allowed", "", "not_allowed",
                                       "", "", "port", "not_allowed"]


def test_deny_refuses_everything_and_malformed_addresses_are_refused() -> None:
    out = judge([(DENY, "db.example.com:5432", False), (DENY, "1.1.1.1:53", False)])
    assert [r["cls"] for r in out] == ["deny", "deny"]
    out = judge([(PUBLIC, a, False) for a in MALFORMED])
    assert [r["cls"] for r in out] == ["malformed"] * len(MALFORMED)


@pytest.mark.parametrize(("host", "ok"), [
    ("10.0.5.7", True), ("127.0.0.1", True), ("db.example.com", True),
    ("*.10.0.5.7", False), ("010.0.5.7", False), ("10.0.5", False), ("2130706433", False),
    ("::1", False), ("localhost", False)])
def test_allow_rules_take_names_and_canonical_ipv4_addresses(host: str, ok: bool) -> None:
    # An operator's database has an address: a rule may name it exactly (the gateway still
    # refuses private/loopback/metadata addresses unless the operator allows them).
    from eventlog.errors import InvalidEvent
    from eventlog.events.policies import EgressPolicySet, EgressRule
    event = EgressPolicySet(namespace="acme", mode="allow",
                            allow=(EgressRule(host=host, ports=(5432,)),))
    if ok:
        event.validate()
    else:
        with pytest.raises(InvalidEvent):
            event.validate()
