"""The URL half of the egress decision (workerd/gateway/egress.js), case by case.

Nothing is fetched: these are decisions only. The address half (what a name
resolves to) is workerd's `network` service, tested in the data plane tests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from services.dataplane.config import workerd_dir

PUBLIC: dict[str, Any] = {"mode": "public"}
DENY: dict[str, Any] = {"mode": "deny"}
ALLOW: dict[str, Any] = {"mode": "allow", "allow": [
    {"host": "api.example.com", "ports": [443]},
    {"host": "*.cdn.example.org"},
]}

# (policy, url, loopback allowed by the operator test setting, refused?)
CASES: list[tuple[dict[str, Any], str, bool, bool]] = [
    (PUBLIC, "https://example.com/", False, False),
    (PUBLIC, "http://93.184.216.34/", False, False),
    (PUBLIC, "ftp://example.com/", False, True),
    (PUBLIC, "http://127.0.0.1:8080/", False, True),
    (PUBLIC, "http://127.0.0.1:8080/", True, False),
    (PUBLIC, "http://2130706433/", False, True),        # 127.0.0.1 in decimal
    (PUBLIC, "http://0x7f.1/", False, True),            # 127.0.0.1 in hex, short form
    (PUBLIC, "http://localhost/", False, True),
    (PUBLIC, "http://app.localhost/", False, True),
    (PUBLIC, "http://localhost:9/", True, False),
    (PUBLIC, "http://10.1.2.3/", False, True),
    (PUBLIC, "http://10.1.2.3/", True, True),           # the test setting is loopback only
    (PUBLIC, "http://172.16.0.1/", False, True),
    (PUBLIC, "http://172.32.0.1/", False, False),
    (PUBLIC, "http://192.168.1.1/", False, True),
    (PUBLIC, "http://100.64.0.1/", False, True),
    (PUBLIC, "http://169.254.169.254/latest/meta-data/", False, True),
    (PUBLIC, "http://169.254.169.254/", True, True),
    (PUBLIC, "http://metadata.google.internal/", False, True),
    (PUBLIC, "http://0.0.0.0/", False, True),
    (PUBLIC, "http://224.0.0.1/", False, True),
    (PUBLIC, "http://[::1]/", False, True),
    (PUBLIC, "http://[::1]/", True, False),
    (PUBLIC, "http://[::]/", False, True),
    (PUBLIC, "http://[::ffff:127.0.0.1]/", False, True),
    (PUBLIC, "http://[::ffff:10.0.0.1]/", False, True),
    (PUBLIC, "http://[fd00::1]/", False, True),
    (PUBLIC, "http://[fe80::1]/", False, True),
    (PUBLIC, "http://[2606:4700::1111]/", False, False),
    # Every IPv6 form that embeds an IPv4 address is judged by that address.
    (PUBLIC, "http://[::ffff:0:7f00:1]/", False, True),         # IPv4-translated 127.0.0.1
    (PUBLIC, "http://[::ffff:0:127.0.0.1]/", False, True),
    (PUBLIC, "http://[0:0:0:0:0:ffff:7f00:1]/", False, True),  # IPv4-mapped, long form
    (PUBLIC, "http://[::FFFF:127.0.0.1]/", False, True),
    (PUBLIC, "http://[::ffff:a9fe:a9fe]/", False, True),       # mapped metadata address
    (PUBLIC, "http://[::127.0.0.1]/", False, True),            # IPv4-compatible
    (PUBLIC, "http://[::a00:1]/", False, True),                # compatible 10.0.0.1
    (PUBLIC, "http://[2002:7f00:1::]/", False, True),          # 6to4 127.0.0.1
    (PUBLIC, "http://[2002:a9fe:a9fe::1]/", False, True),      # 6to4 169.254.169.254
    (PUBLIC, "http://[2002:c0a8:101:1::1]/", False, True),     # 6to4 192.168.1.1
    (PUBLIC, "http://[2002:7f00:1::]/", True, True),           # a relay is not loopback
    (PUBLIC, "http://[64:ff9b::7f00:1]/", False, True),        # NAT64 127.0.0.1
    (PUBLIC, "http://[64:ff9b::a9fe:a9fe]/", False, True),
    (PUBLIC, "http://[64:ff9b:1::7f00:1]/", False, True),      # local-use NAT64
    (PUBLIC, "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", False, True),  # Teredo client
    (PUBLIC, "http://[2001:0:a00:1::1]/", False, True),        # Teredo server 10.0.0.1
    (PUBLIC, "http://[2606:4700::5efe:7f00:1]/", False, True),  # ISATAP 127.0.0.1
    (PUBLIC, "http://[2606:4700::200:5efe:a9fe:a9fe]/", False, True),
    (PUBLIC, "http://[::ffff:0:5db8:d822]/", False, False),    # translated 93.184.216.34
    (PUBLIC, "http://[::ffff:5db8:d822]/", False, False),      # mapped 93.184.216.34
    (PUBLIC, "http://[2002:5db8:d822::1]/", False, False),     # 6to4 93.184.216.34
    (PUBLIC, "http://[2606:4700::5efe:5db8:d822]/", False, False),
    (DENY, "https://example.com/", False, True),
    (DENY, "http://127.0.0.1/", True, True),
    (ALLOW, "https://api.example.com/v1", False, False),
    (ALLOW, "http://api.example.com/v1", False, True),    # port 80 not allowed
    (ALLOW, "https://api.example.com:8443/", False, True),
    (ALLOW, "https://other.example.com/", False, True),
    (ALLOW, "https://img.cdn.example.org/a.png", False, False),
    (ALLOW, "http://img.cdn.example.org:8080/", False, False),
    (ALLOW, "https://cdn.example.org/", False, True),      # *. does not match the apex
    (ALLOW, "https://evilcdn.example.org/", False, True),
    (ALLOW, "https://api.example.com.evil.test/", False, True),
]


def js_refusals() -> list[str]:
    node = shutil.which("node")
    assert node is not None, "node is required (it installs workerd via npm)"
    module = workerd_dir() / "gateway" / "egress.js"
    cases = [[policy, url, loopback] for policy, url, loopback, _ in CASES]
    script = f"""
      const {{ egressRefusal }} = await import({json.dumps(module.as_uri())});
      const cases = {json.dumps(cases)};
      console.log(JSON.stringify(cases.map(([p, u, l]) => egressRefusal(p, new URL(u), l))));
    """
    done = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True,
                          text=True, timeout=30, check=True)
    result: list[str] = json.loads(done.stdout)
    return result


def test_decisions() -> None:
    reasons = js_refusals()
    wrong = [(url, loopback, reason) for (_, url, loopback, refused), reason
             in zip(CASES, reasons, strict=True) if bool(reason) != refused]
    assert wrong == []


def test_reasons_say_why() -> None:
    reasons = {(c[0]["mode"], c[1], c[2]): r for c, r in zip(CASES, js_refusals(), strict=True)}
    assert "loopback" in reasons[("public", "http://[::1]/", False)]
    assert "metadata" in reasons[("public", "http://169.254.169.254/latest/meta-data/", False)]
    assert "private" in reasons[("public", "http://10.1.2.3/", True)]
    assert "allow list" in reasons[("allow", "https://other.example.com/", False)]
    assert "port 80" in reasons[("allow", "http://api.example.com/v1", False)]
    assert "denies" in reasons[("deny", "https://example.com/", False)]
    translated = reasons[("public", "http://[::ffff:0:7f00:1]/", False)]
    assert translated == "loopback address (127.0.0.1 embedded in an IPv4-translated address)"
    assert "6to4" in reasons[("public", "http://[2002:a9fe:a9fe::1]/", False)]
    assert "Teredo client" in reasons[("public",
                                       "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", False)]
    assert "ISATAP" in reasons[("public", "http://[2606:4700::5efe:7f00:1]/", False)]
