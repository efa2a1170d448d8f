"""Red team, sockets: a tenant's connect() cannot reach what its egress policy does not
allow - no loopback, private, link-local or metadata address in any spelling, whatever
the namespace lists - from the worker, its Durable Object or a loader child.

This platform runs WITHOUT the operators' loopback setting (production's shape), so a
TCP echo server of this test on 127.0.0.1 stands for a database on the operator's own
host: it counts every connection that reaches it, and must count none. The attacks with
the loopback setting (a port outside the pattern, another namespace's allow list, deny)
are in test_redteam_egress.py, which runs under it.

Before this pass every connect() failed ("proxy request failed": no socket path at all);
after it, each is judged, and these are refused. The tenant only sees "Network
connection lost." (workerd accepts the CONNECT before the egress decides:
docs/egress.md), so the refusal is proven by the server's count, not by a message.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from tests.integration.test_sockets import LOST, PROBE, TOML, Echo
from tests.security.rig import ATTACKER, Walls

pytestmark = pytest.mark.security

PLACES = ("/worker", "/object", "/child")


def spellings(port: int) -> list[str]:
    return [f"{host}:{port}" for host in (
        "127.0.0.1", "localhost", "LOCALHOST.", "127.1", "0x7f.1", "2130706433",
        "017700000001", "0177.0.0.1", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::1]",
        "[::127.0.0.1]", "a.localhost")]


# Never a destination (no server of ours there: refused before or at the network).
ELSEWHERE = ["169.254.169.254:80", "0xa9fea9fe:80", "[::ffff:169.254.169.254]:80",
             "metadata.google.internal:80", "metadata:80", "10.0.0.1:5432",
             "192.168.0.1:6379", "[fd00::1]:5432", "0.0.0.0:5432"]


@pytest.fixture(scope="module")
async def scene(walls: Walls) -> Walls:
    await walls.attacker.deploy_js("sockets", PROBE, TOML)
    return walls


@pytest.fixture
async def db() -> AsyncIterator[Echo]:
    async with Echo() as server:
        yield server


async def attempt(walls: Walls, place: str, to: str) -> str:
    r = await walls.attack("sockets", place, params={"to": to, "hold": "0"}, timeout=30)
    assert r.status_code == 200, (place, to, r.status_code, r.text)
    return r.text


@pytest.mark.parametrize("policy", ["public", "allow"])
async def test_no_spelling_of_loopback_private_or_metadata_is_reached(
        scene: Walls, db: Echo, policy: str) -> None:
    walls = scene
    # The attacker lists the loopback server itself: still refused without the operator's
    # allowance (the rule is the namespace's wish, not the operator's).
    args = ["allow", "--allow", f"127.0.0.1:{db.port}", "--allow", "metadata.example.com"] \
        if policy == "allow" else ["public"]
    await walls.admin.wdl("ns", "egress", "set", *args, "--ns", ATTACKER)
    await asyncio.sleep(1.5)  # the objects' route cache (1 s)
    try:
        for place in PLACES:
            for to in spellings(db.port) + ELSEWHERE:
                assert await attempt(walls, place, to) == LOST, (policy, place, to)
        assert db.connections == 0
    finally:
        await walls.admin.wdl("ns", "egress", "set", "public", "--ns", ATTACKER)
    await walls.assert_victim_intact()


async def test_a_name_resolving_to_loopback_is_refused_by_the_network(
        scene: Walls, db: Echo) -> None:
    """DNS: a name the JS judgement cannot know is local (this host's own name, which
    /etc/hosts maps to loopback) passes `public`; the NET network service checks the
    address it resolved to in the same step as it connects, and refuses."""
    walls = scene
    name = socket.gethostname()
    assert socket.gethostbyname(name).startswith("127."), \
        f"this test needs the host's name ({name}) to resolve to loopback (/etc/hosts)"
    for place in PLACES:
        assert await attempt(walls, place, f"{name}:{db.port}") == LOST, place
    assert db.connections == 0
    await walls.assert_victim_intact()


async def test_deny_refuses_everything(scene: Walls, db: Echo) -> None:
    walls = scene
    await walls.admin.wdl("ns", "egress", "set", "deny", "--ns", ATTACKER)
    await asyncio.sleep(1.5)
    try:
        for place in PLACES:
            for to in (f"127.0.0.1:{db.port}", "1.1.1.1:53", "example.com:443"):
                assert await attempt(walls, place, to) == LOST, (place, to)
        assert db.connections == 0
    finally:
        await walls.admin.wdl("ns", "egress", "set", "public", "--ns", ATTACKER)
    await walls.assert_victim_intact()
