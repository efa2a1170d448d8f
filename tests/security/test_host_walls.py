"""The Names wall for hosts: a host belongs to one namespace with every path under it, and
platform names (the platform domain, IP literals, local names) belong to no tenant.

The victim holds an exact claim on `vault.victim.test` and a prefix claim on
`shop.victim.test`, both served by its worker `vault` (which answers "vault"), and has
proven both through DNS TXT records on a real DNS server on loopback (the platform's
resolver here). The attacker, with a deployer token scoped to its own namespace,
deploys `evil` (which answers "attacker ...") and tries to take the victim's hosts,
paths under them, and platform names, in every spelling. Every attempt is refused
with a clear code, appends nothing to the log, leaves the host table as it was, and no
request for those hosts ever reaches the attacker.

On the real servers host verification is on (production): a claim routes only once
proven. On `wdl dev` it is off, so there the walls hold without any proof.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from services.api.hostproof import challenge, record_name
from tests.dns import TxtZone, dns_server
from tests.security.rig import ATTACKER, DOMAIN, VICTIM, Walls

pytestmark = pytest.mark.security

EVIL_JS = """\
export default {
  fetch(request) {
    return new Response("attacker " + new URL(request.url).pathname);
  },
};
"""

VAULT_HOST = "vault.victim.test"
SHOP_HOST = "shop.victim.test"
# What the victim's hosts answer, path by path: every one of them is the victim's.
VICTIM_REQUESTS = [(VAULT_HOST, "/"), (VAULT_HOST, "/login"), (VAULT_HOST, "/login/x"),
                   (SHOP_HOST, "/"), (SHOP_HOST, "/admin"), (SHOP_HOST, "/checkout"),
                   (SHOP_HOST, "/checkout/pay")]
HOST_EVENTS = ("host.claimed", "host.released", "host.verified")


@pytest.fixture(scope="module")
def zone() -> Iterator[TxtZone]:
    """The DNS zone the platform's resolver answers from (both shapes of the module)."""
    with dns_server() as (served, _):
        yield served


@pytest.fixture(scope="module")
def walls_env(zone: TxtZone) -> dict[str, str]:
    return {"WDL_DNS_RESOLVER": zone.address,
            "WDL_HOST_VERIFICATION": "dns"}  # `wdl dev` turns it off whatever this says


def publish(zone: TxtZone, host: str, namespace: str) -> None:
    """The DNS owner of `host` publishes the proof for `namespace`."""
    zone.records.setdefault(record_name(host), []).append(challenge(DOMAIN, host, namespace))


@pytest.fixture(scope="module")
async def scene(walls: Walls, zone: TxtZone) -> Walls:
    """The victim's claims (set by the admin, `--ns victim`), proven, and the attacker's
    worker."""
    admin = walls.admin
    await admin.wdl("hosts", "claim", VAULT_HOST, "--ns", VICTIM, "--worker", "vault")
    await admin.wdl("hosts", "claim", SHOP_HOST, "--ns", VICTIM, "--worker", "vault",
                    "--match", "prefix")
    for host in (VAULT_HOST, SHOP_HOST):
        shown = (await admin.wdl("hosts", "verify", host, "--ns", VICTIM, "--show",
                                 "--json")).json()
        assert (shown["record"], shown["value"]) == (record_name(host),
                                                     challenge(DOMAIN, host, VICTIM))
        publish(zone, host, VICTIM)
        await admin.wdl("hosts", "verify", host, "--ns", VICTIM)
    await walls.attacker.deploy_js("evil", EVIL_JS)
    r = await walls.attack("evil", "/x")
    assert (r.status_code, r.text) == (200, "attacker /x"), r.text
    await assert_victim_serves(walls)
    return walls


async def assert_victim_serves(walls: Walls) -> None:
    for host, path in VICTIM_REQUESTS:
        r = await walls.get(host, path)
        assert (r.status_code, r.text) == (200, "vault"), (host, path, r.status_code, r.text)


async def host_table(walls: Walls) -> dict[str, Any]:
    """Every namespace's claims as the admin lists them."""
    tables = {}
    for ns in (VICTIM, ATTACKER):
        listed = await walls.admin.wdl("hosts", "list", "--ns", ns, "--json")
        tables[ns] = listed.json()
    return tables


async def host_events(walls: Walls) -> list[Any]:
    """The host events of the log, as the audit trail lists them (accepted or not)."""
    args = [arg for kind in HOST_EVENTS for arg in ("--type", kind)]
    listed = await walls.admin.wdl("audit", *args, "--all", "--limit", "500", "--json")
    events: list[Any] = listed.json()
    return events


async def claim(walls: Walls, pattern: str, match: str = "exact",
                worker: str | None = "evil") -> tuple[int, str]:
    args = ["hosts", "claim", pattern, "--ns", ATTACKER, "--match", match]
    if worker is not None:
        args += ["--worker", worker]
    result = await walls.attacker.wdl(*args, ok=False)
    return result.code, result.text


async def refused_all(walls: Walls, attempts: list[tuple[str, str, str]]) -> None:
    """Each (pattern, match, code) claim is refused with `code`; the log and the host
    table are unchanged."""
    before_events, before_table = await host_events(walls), await host_table(walls)
    accepted = []
    for pattern, match, code in attempts:
        exit_code, text = await claim(walls, pattern, match)
        if exit_code == 0 or code not in text:
            accepted.append((pattern, match, exit_code, text.strip()[-200:]))
    assert accepted == [], accepted
    assert await host_table(walls) == before_table
    assert await host_events(walls) == before_events


async def test_no_path_under_the_victims_exact_host(scene: Walls) -> None:
    attempts = [(f"{VAULT_HOST}{path}", match, "host_claimed")
                for path in ("", "/", "/login", "/login/", "/x/y", "/vault")
                for match in ("exact", "prefix")]
    await refused_all(scene, attempts)
    await assert_victim_serves(scene)
    # Nor can it give up the victim's claims, in its namespace or the victim's.
    before_events, before_table = await host_events(scene), await host_table(scene)
    for pattern in (VAULT_HOST, SHOP_HOST, f"{VAULT_HOST}/login", VAULT_HOST.upper()):
        for ns in (ATTACKER, VICTIM):
            result = await scene.attacker.wdl("hosts", "release", pattern, "--ns", ns, ok=False)
            assert result.code != 0, (pattern, ns, result.text)
            assert any(code in result.text for code in (
                "host_not_found", "namespace_not_found")), result.text
    assert await host_table(scene) == before_table
    assert await host_events(scene) == before_events
    await assert_victim_serves(scene)


async def test_no_path_under_the_victims_prefix_host(scene: Walls) -> None:
    attempts = [(f"{SHOP_HOST}{path}", match, "host_claimed")
                for path in ("", "/", "/admin", "/checkout", "/checkout/", "/a/b/c")
                for match in ("exact", "prefix")]
    await refused_all(scene, attempts)
    await assert_victim_serves(scene)


async def test_other_spellings_of_the_victims_hosts(scene: Walls) -> None:
    """Case, a trailing dot and Unicode look-alikes fold onto the victim's host, and are
    refused as the victim's; a port or a space makes no host name at all."""
    theirs = ["VAULT.victim.test/login", "Vault.Victim.Test/", f"{VAULT_HOST}./login",
              f"{VAULT_HOST}.", "\uff56\uff41\uff55\uff4c\uff54.victim.test/login",
              f"{SHOP_HOST.upper()}/admin", f"{SHOP_HOST}./checkout"]
    malformed = [f"{VAULT_HOST}:443/login", f"{VAULT_HOST}:80", f"{SHOP_HOST}.:8080/checkout",
                 f" {VAULT_HOST}/login", f"{VAULT_HOST}../x"]
    await refused_all(scene, [(p, m, "host_claimed") for p in theirs
                              for m in ("exact", "prefix")]
                      + [(p, m, "invalid_event") for p in malformed
                         for m in ("exact", "prefix")])
    await assert_victim_serves(scene)


PLATFORM_NAMES = [
    # IPv4 in every spelling a URL parser reads as an address
    "127.0.0.1", "0.0.0.0", "127.1", "2130706433", "0x7f000001", "0x7f.0.0.1",
    "0177.0.0.1", "127.0.0.1/", "127.0.0.1/admin", "10.0.0.1", "169.254.169.254",
    # IPv6, with and without brackets, IPv4-mapped
    "[::1]", "::1", "[::]", "[::ffff:127.0.0.1]", "::ffff:7f00:1", "[0:0:0:0:0:0:0:1]",
    # local names
    "localhost", "LOCALHOST", "localhost.", "gateway.localhost", "localhost.localdomain",
    "printer.local", "metadata.google.internal", "router.home.arpa",
    "1.0.0.127.in-addr.arpa", "gateway", "redis",
    # the platform domain and its subdomains, the victim's namespace host above all
    "workers.local", "victim.workers.local", "victim.workers.local/vault/",
    "attacker.workers.local", "x.victim.workers.local", "WORKERS.LOCAL",
]


async def test_platform_names_belong_to_no_tenant(scene: Walls) -> None:
    before_events, before_table = await host_events(scene), await host_table(scene)
    accepted = []
    # The name is refused whatever the match; both are tried on a few of each kind.
    both = {"127.0.0.1", "[::1]", "localhost", "workers.local", "victim.workers.local"}
    for pattern in PLATFORM_NAMES:
        for match in ("exact", "prefix") if pattern in both else ("prefix",):
            exit_code, text = await claim(scene, pattern, match)
            # host_reserved from the API; a malformed IPv6 spelling is no host at all.
            if exit_code == 0 or not any(code in text for code in (
                    "host_reserved", "invalid_event")):
                accepted.append((pattern, match, exit_code, text.strip()[-200:]))
    assert accepted == [], accepted
    assert await host_table(scene) == before_table
    assert await host_events(scene) == before_events


async def test_plain_requests_to_the_gateway_never_reach_a_tenant(scene: Walls) -> None:
    """Whatever was tried above, requests naming the gateway by address, as localhost or
    by the platform domain get no tenant's answer."""
    for pattern in ("127.0.0.1", "localhost", "0.0.0.0", "workers.local"):
        await claim(scene, pattern, "prefix")  # refused (test above); tried here regardless
    port = scene.gateway.rsplit(":", 1)[1]
    hosts = ["127.0.0.1", f"127.0.0.1:{port}", "localhost", f"localhost:{port}", "0.0.0.0",
             f"[::1]:{port}", "[::1]", "2130706433", "0x7f.1", "127.1", "LOCALHOST.",
             "workers.local", f"workers.local:{port}", "gateway", "printer.local"]
    reached = []
    for host in hosts:
        for path in ("/", "/evil/", "/login"):
            r = await scene.get(host, path)
            if "attacker" in r.text or r.status_code == 200:
                reached.append((host, path, r.status_code, r.text[:100]))
    assert reached == [], reached
    await assert_victim_serves(scene)
    await scene.assert_victim_intact()


async def test_a_proof_for_the_victim_proves_nothing_for_the_attacker(scene: Walls,
                                                                      zone: TxtZone) -> None:
    """The victim's TXT records stand; the attacker's namespace has its own challenge."""
    before_events, before_table = await host_events(scene), await host_table(scene)
    for host in (VAULT_HOST, SHOP_HOST):
        result = await scene.attacker.wdl("hosts", "verify", host, "--ns", ATTACKER, ok=False)
        assert result.code != 0 and "host_not_verified" in result.text, result.text
        assert challenge(DOMAIN, host, ATTACKER) in result.text  # what it would need
    for name in ("127.0.0.1", "localhost", "workers.local", "victim.workers.local"):
        result = await scene.attacker.wdl("hosts", "verify", name, "--ns", ATTACKER, ok=False)
        assert result.code != 0 and "host_reserved" in result.text, result.text
    assert await host_table(scene) == before_table
    assert await host_events(scene) == before_events
    await assert_victim_serves(scene)


async def test_a_squatter_loses_the_host_to_its_dns_owner(scene: Walls, zone: TxtZone) -> None:
    """First come is not owner: the attacker claims a host nobody holds yet; in
    production it routes nothing without a proof, and once the host's DNS owner proves
    it, the attacker's claims are gone for good."""
    squat = "squat.victim.test"
    code, text = await claim(scene, squat, "prefix")
    assert code == 0, text
    r = await scene.get(squat, "/")
    if scene.kind == "servers":  # verification on: no proof, no route
        assert (r.status_code, r.json()["error"]) == (404, "unknown_host"), r.text
    else:  # `wdl dev`: no verification
        assert r.text == "attacker /"
    publish(zone, squat, VICTIM)
    await scene.admin.wdl("hosts", "verify", squat, "--ns", VICTIM)
    listed = (await scene.admin.wdl("hosts", "list", "--ns", ATTACKER, "--json")).json()
    assert [row["pattern"] for row in listed] == []
    await refused_all(scene, [(squat, "prefix", "host_claimed"),
                              (f"{squat}/x", "exact", "host_claimed")])
    await scene.admin.wdl("hosts", "claim", squat, "--ns", VICTIM, "--worker", "vault")
    r = await scene.get(squat, "/anything")
    assert (r.status_code, r.text) == (200, "vault")
    await assert_victim_serves(scene)


async def test_the_attackers_own_host_is_claimed_in_canonical_form(scene: Walls,
                                                                   zone: TxtZone) -> None:
    """The walls refuse what is not the attacker's, not everything: its own host, typed
    in another case with a trailing dot, is claimed as the canonical name, and routes
    (once proven, where proofs are required)."""
    code, text = await claim(scene, "Evil.Attacker.Test./", "prefix")
    assert code == 0, text
    listed = (await scene.attacker.wdl("hosts", "list", "--ns", ATTACKER, "--json")).json()
    assert [(row["pattern"], row["match"]) for row in listed] == [
        ("evil.attacker.test/", "prefix")]
    publish(zone, "evil.attacker.test", ATTACKER)
    await scene.attacker.wdl("hosts", "verify", "evil.attacker.test", "--ns", ATTACKER)
    r = await scene.get("evil.attacker.test", "/y")
    assert (r.status_code, r.text) == (200, "attacker /y")
    await assert_victim_serves(scene)
