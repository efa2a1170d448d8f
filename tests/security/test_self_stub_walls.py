"""Walls of self stubs (`exports.X({props})` of "cloudflare:workers"; issue 25).

A tenant's self stub is minted by the gateway (workerd/gateway/self.js) with the
namespace, worker and version the platform loaded, never the tenant's words. The attacker
tries: props forged to look like the platform's (another namespace, worker, version,
entrypoint) - they are only the props its own entrypoint sees; the minter itself out of
env; `__`-prefixed entrypoints and methods (the platform's own exports); props that are not
JSON or too large; a loader child handed a victim-looking stub and a victim-looking plain
object; and a stub minted by one version still answering from that version after another
is promoted (pinned, as on Cloudflare). The victim is unchanged after each.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.security.rig import ATTACKER, VICTIM, Walls

pytestmark = pytest.mark.security

SELFIE = """\
import { WorkerEntrypoint, exports } from "cloudflare:workers";

const MARK = "attacker-{VERSION}";
const FORGED = { namespace: "victim", worker: "vault", version: "{VICTIM_VERSION}",
                 entrypoint: "default", props: { admin: true } };
const CHILD = `export default { async fetch(request, env) {
  let stub;
  try { stub = await env.V.who(); } catch (e) { stub = { error: String(e.message) }; }
  let fetched;
  try { fetched = await (await env.V.fetch("http://vault/state")).json(); }
  catch (e) { fetched = { error: String(e.message) }; }
  return Response.json({ stub, fetched, like: typeof env.LIKE.who, likeValue: env.LIKE });
} };`;

export class Echo extends WorkerEntrypoint {
  who() { return { mark: MARK, props: this.ctx.props ?? null }; }
  fetch(request) {
    return Response.json({ mark: MARK, path: new URL(request.url).pathname,
                           props: this.ctx.props ?? null });
  }
}

export class __Sneaky extends WorkerEntrypoint {
  who() { return "sneaky"; }
}

async function attempt(fn) {
  try { return { ok: await fn() }; } catch (e) { return { error: String(e && e.message || e) }; }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/probe") return new Response(MARK + " default");
    if (url.pathname === "/forge") {
      return Response.json({
        typeofEcho: typeof exports.Echo,
        then: typeof exports.then,
        minter: typeof env.__WDL_SELF,
        forged: await attempt(() => exports.Echo({ props: FORGED }).who()),
        forgedFetch: await attempt(async () =>
          (await exports.Echo({ props: FORGED }).fetch("http://vault/state")).json()),
        defaultForged: await attempt(async () =>
          (await exports.default({ props: FORGED }).fetch("http://vault/probe")).text()),
        sneaky: await attempt(() => exports.__Sneaky().who()),
        dunderMethod: await attempt(() => exports.Echo().__WdlWorkflows({})),
        notJson: await attempt(() => exports.Echo({ props: { n: 1n } }).who()),
        huge: await attempt(() => exports.Echo({ props: { big: "x".repeat(70000) } }).who()),
      });
    }
    if (url.pathname === "/child") {
      const stub = await exports.Echo({ props: FORGED });
      const child = env.LOADER.get("victim-looking", async () => ({
        compatibilityDate: "2025-11-17", mainModule: "c.js", modules: { "c.js": CHILD },
        env: { V: stub, LIKE: FORGED }, globalOutbound: null }));
      return child.getEntrypoint().fetch("http://child/");
    }
    if (url.pathname === "/pinned") {
      const stub = exports.Echo({ props: { n: 1 } });
      const first = await stub.who();
      await new Promise((r) => setTimeout(r, Number(url.searchParams.get("wait"))));
      return Response.json({ first, later: await stub.who() });
    }
    return Response.json(await exports.Echo().who());
  },
};
"""

LOADER_TOML = """
worker_loaders = [{binding = "LOADER"}]
"""


async def victim_version(walls: Walls) -> str:
    out = await walls.admin.wdl("versions", "vault", "--ns", VICTIM, "--json")
    rows: list[dict[str, Any]] = out.json()
    return next(str(r["version_id"]) for r in rows if r["active"])


def selfie(version: str, victim: str) -> str:
    return SELFIE.replace("{VERSION}", version).replace("{VICTIM_VERSION}", victim)


async def test_forged_props_reach_only_the_attackers_own_entrypoint(walls: Walls) -> None:
    victim = await victim_version(walls)
    await walls.attacker.deploy_js("selfie", selfie("v1", victim), LOADER_TOML)
    r = await walls.attack("selfie", "/forge")
    assert r.status_code == 200, r.text
    got = r.json()
    forged = {"namespace": VICTIM, "worker": "vault", "version": victim,
              "entrypoint": "default", "props": {"admin": True}}
    assert (got["typeofEcho"], got["then"], got["minter"]) == ("function", "undefined",
                                                                "undefined")
    # The forged fields are just the props the attacker's own Echo sees.
    assert got["forged"] == {"ok": {"mark": "attacker-v1", "props": forged}}
    assert got["forgedFetch"] == {"ok": {"mark": "attacker-v1", "path": "/state",
                                         "props": forged}}
    assert got["defaultForged"] == {"ok": "attacker-v1 default"}
    assert "is not an entrypoint" in got["sneaky"]["error"], got["sneaky"]
    assert "ok" not in got["dunderMethod"], got["dunderMethod"]
    assert "JSON" in got["notJson"]["error"], got["notJson"]
    assert "more than" in got["huge"]["error"], got["huge"]
    await walls.assert_victim_intact()


async def test_a_child_handed_a_victim_looking_stub_gets_nothing(walls: Walls) -> None:
    victim = await victim_version(walls)
    await walls.attacker.deploy_js("selfie", selfie("v1", victim), LOADER_TOML)
    r = await walls.attack("selfie", "/child")
    assert r.status_code == 200, r.text
    got = r.json()
    forged = {"namespace": VICTIM, "worker": "vault", "version": victim,
              "entrypoint": "default", "props": {"admin": True}}
    assert got["stub"] == {"mark": "attacker-v1", "props": forged}
    assert got["fetched"] == {"mark": "attacker-v1", "path": "/state", "props": forged}
    assert (got["like"], got["likeValue"]) == ("undefined", forged)
    await walls.assert_victim_intact()


async def test_a_self_stub_stays_with_the_version_that_minted_it(walls: Walls) -> None:
    victim = await victim_version(walls)
    await walls.attacker.deploy_js("selfie", selfie("v1", victim), LOADER_TOML)
    staged = await walls.attacker.deploy(
        walls.attacker.project("selfie", selfie("v2", victim), LOADER_TOML), "--no-promote")
    v2 = str(staged.json()["version_id"])
    pending = asyncio.create_task(walls.attack("selfie", "/pinned?wait=6000", timeout=60))
    await asyncio.sleep(1.5)
    await walls.attacker.wdl("promote", "selfie", v2, "--ns", ATTACKER)
    fresh = await walls.attack("selfie", "/")
    assert fresh.json()["mark"] == "attacker-v2", fresh.text  # the promotion took
    r = await pending
    assert r.status_code == 200, r.text
    assert r.json() == {"first": {"mark": "attacker-v1", "props": {"n": 1}},
                        "later": {"mark": "attacker-v1", "props": {"n": 1}}}, json.dumps(
        r.json())
    await walls.assert_victim_intact()
