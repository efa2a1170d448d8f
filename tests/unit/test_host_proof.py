"""Ownership proofs are looked up with dnspython against a real DNS server on loopback."""

from __future__ import annotations

import pytest

from services.api import hostproof
from tests.dns import dns_server

pytestmark = pytest.mark.unit


def test_the_challenge_is_tied_to_platform_host_and_namespace() -> None:
    base = hostproof.challenge("workers.local", "vault.victim.test", "victim")
    assert base.startswith("wdl-verify=") and len(base) == len("wdl-verify=") + 32
    assert base == hostproof.challenge("workers.local", "vault.victim.test", "victim")
    others = {hostproof.challenge("workers.local", "vault.victim.test", "attacker"),
              hostproof.challenge("workers.local", "shop.victim.test", "victim"),
              hostproof.challenge("other.example", "vault.victim.test", "victim")}
    assert base not in others and len(others) == 3
    assert hostproof.record_name("vault.victim.test") == "_wdl-challenge.vault.victim.test"


async def test_txt_values_from_a_real_dns_server() -> None:
    with dns_server() as (zone, address):
        name = "_wdl-challenge.vault.victim.test"
        assert await hostproof.txt_values(name, address) == []  # NXDOMAIN
        zone.records[name] = ["unrelated", "wdl-verify=abc"]
        assert sorted(await hostproof.txt_values(name, address)) == ["unrelated",
                                                                      "wdl-verify=abc"]
        assert zone.queries.count(name) == 2
        # A long value spread over several character-strings reads back whole.
        zone.records[name] = ["x" * 300]
        assert await hostproof.txt_values(name, address) == ["x" * 300]
        # A record name past DNS's 255 octets cannot exist: nothing to ask.
        queries = len(zone.queries)
        long_host = ".".join(["a" * 60] * 4) + ".test"
        assert await hostproof.txt_values(hostproof.record_name(long_host), address) == []
        assert len(zone.queries) == queries


async def test_a_silent_resolver_is_unavailable_not_a_missing_record() -> None:
    with dns_server() as (_, address):
        pass  # stopped: nothing answers on that port any more
    with pytest.raises(hostproof.ProofUnavailable):
        await hostproof.txt_values("_wdl-challenge.a.example.test", address, timeout=0.5)


@pytest.mark.parametrize(("spec", "expected"), [
    ("127.0.0.1", [("127.0.0.1", 53)]),
    ("127.0.0.1:5353, [::1]:53", [("127.0.0.1", 5353), ("::1", 53)]),
    ("::1", [("::1", 53)]),
])
def test_resolver_addresses(spec: str, expected: list[tuple[str, int]]) -> None:
    assert [(s.address, s.port) for s in hostproof.nameservers(spec)] == expected  # type: ignore[attr-defined]


@pytest.mark.parametrize("spec", ["", "dns.example.com", "127.0.0.1:x"])
def test_bad_resolver_addresses(spec: str) -> None:
    with pytest.raises(ValueError):
        hostproof.nameservers(spec)
