"""The rig itself: the victim reads back what it was seeded with, the attacker's token is
scoped to its namespace (so every other test's refusals mean something)."""

from __future__ import annotations

import pytest

from tests.security.rig import ATTACKER, VICTIM, Walls

pytestmark = pytest.mark.security


async def test_the_victim_is_seeded_and_reads_back(walls: Walls) -> None:
    await walls.assert_victim_intact()


async def test_the_attacker_deploys_in_its_namespace_and_nowhere_else(walls: Walls) -> None:
    version = await walls.attacker.deploy_js(
        "probe", "export default { fetch() { return new Response('attacker here'); } };")
    assert version
    r = await walls.attack("probe", "/")
    assert (r.status_code, r.text) == (200, "attacker here")
    refused = await walls.attacker.wdl("deploy", str(walls.attacker.project(
        "vault", "export default { fetch() { return new Response('pwned'); } };")),
        "--ns", VICTIM, ok=False)
    assert refused.code != 0 and "namespace_not_found" in refused.text, refused.text
    assert ATTACKER != VICTIM
    await walls.assert_victim_intact()
