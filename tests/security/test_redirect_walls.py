"""The redirected config (`.wrangler/deploy/config.json`, cli/redirect.py) as an attack by
another local user: a deploy config planted in a shared parent directory (a world-writable
/tmp, a shared checkout) would choose what `wdl deploy` of a directory below it uploads,
with the deploying user's token, into the deploying user's namespace (wrangler follows such
a file). `wdl deploy` refuses one above the project that another user owns, uploads
nothing, and the victim's worker keeps serving what it served."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.security.rig import VICTIM, Actor, Walls

pytestmark = pytest.mark.security

NOBODY = 65534
EVIL = "export default { fetch() { return new Response('owned by the planter'); } };"


async def vault_versions(walls: Walls) -> list[str]:
    token = walls.admin.env["WDL_TOKEN"]
    async with httpx.AsyncClient(base_url=walls.api, timeout=60) as client:
        r = await client.get(f"/v1/namespaces/{VICTIM}/workers/vault/versions",
                             headers={"authorization": f"Bearer {token}"})
    r.raise_for_status()
    return sorted(str(v["version_id"]) for v in r.json())


def plant(shared: Path) -> Path:
    """The other user's files: a deploy config in `shared` pointing at their own config of
    a worker named like the victim's; returns the victim's directory below it."""
    evil = shared / "evil"
    (evil / "src").mkdir(parents=True)
    (evil / "wrangler.toml").write_text(
        'name = "vault"\nmain = "src/index.js"\ncompatibility_date = "2025-06-01"\n'
        "no_bundle = true\n")
    (evil / "src" / "index.js").write_text(EVIL)
    deploy = shared / ".wrangler" / "deploy"
    deploy.mkdir(parents=True)
    (deploy / "config.json").write_text('{"configPath": "../../evil/wrangler.toml"}')
    for path in [shared / ".wrangler", deploy, deploy / "config.json", evil,
                 *evil.rglob("*")]:
        os.chown(path, NOBODY, NOBODY)
    mine = shared / "victim-app"
    mine.mkdir()
    return mine


async def test_a_deploy_config_planted_above_by_another_user_is_refused(walls: Walls) -> None:
    shared = walls.admin.workdir / f"shared-{walls.kind}"
    mine = plant(shared)
    victim = Actor("victim-admin", walls.admin.env, walls.admin.workdir, VICTIM)
    before = await vault_versions(walls)

    result = await victim.deploy(mine, ok=False)

    assert result.code == 2, result.text
    assert "owned by another user" in " ".join(result.text.split())
    assert "Traceback" not in result.text
    assert await vault_versions(walls) == before
    await walls.assert_victim_intact()
    r = await walls.get(walls.host(VICTIM), "/vault/state")
    assert "owned by the planter" not in r.text
