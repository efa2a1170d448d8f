"""Red team of self stubs (issue 25): the "cloudflare:workers" specifier rewrite, the
self-stub minter and WdlSelf, as an attacker with a deployer token scoped to its own
namespace (tests/security/rig.py). Each attack's victim is unchanged afterwards."""

from __future__ import annotations

from typing import Any

import pytest

from tests.security.rig import Walls

pytestmark = pytest.mark.security

LOADER_TOML = """
worker_loaders = [{binding = "LOADER"}]
"""

# The specifier only as text: in strings, a template, a comment, a regular expression;
# and a child's code shipped as a string (what Dynamic Workflows platforms do), whose
# module lives in a folder.
REWRITE = r"""
import { WorkerEntrypoint, exports } from "cloudflare:workers";

const TEXT = 'import { env } from "cloudflare:workers";';
const TEMPLATE = `export { env } from 'cloudflare:workers'; import("cloudflare:workers")`;
// import "cloudflare:workers"
const RE = /from "cloudflare:workers"/;
const CHILD = `import { WorkerEntrypoint } from "cloudflare:workers";
export default class extends WorkerEntrypoint {
  fetch() { return new Response("child " + typeof WorkerEntrypoint); }
}`;

export class Echo extends WorkerEntrypoint {
  who() { return "echo " + (this.ctx.props ? this.ctx.props.n : "-"); }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/text") {
      const self = await exports.Echo({ props: { n: 1 } }).who();
      return Response.json({ TEXT, TEMPLATE, RE: RE.source, self });
    }
    if (url.pathname === "/child") {
      const child = env.LOADER.get("in-a-folder", async () => ({
        compatibilityDate: "2025-11-17", mainModule: "lib/c.js", modules: { "lib/c.js": CHILD },
        globalOutbound: null }));
      try {
        return new Response(await (await child.getEntrypoint().fetch("http://c/")).text());
      } catch (e) {
        return new Response("error " + String(e && e.message || e));
      }
    }
    if (url.pathname === "/dynamic") {
      const native = await import("cloudflare:" + "workers");
      let minted;
      try { minted = typeof native.exports.Echo; } catch (e) { minted = "error"; }
      return Response.json({ minter: typeof native.env.__WDL_SELF,
                             envMinter: typeof env.__WDL_SELF, minted });
    }
    return new Response("?", { status: 404 });
  },
};
"""


async def test_the_specifier_rewrite_leaves_strings_and_childrens_code_alone(
        walls: Walls) -> None:
    await walls.attacker.deploy_js("rewrite", REWRITE, LOADER_TOML)
    r = await walls.attack("rewrite", "/text")
    assert r.status_code == 200, r.text
    got: dict[str, Any] = r.json()
    assert got == {
        "TEXT": 'import { env } from "cloudflare:workers";',
        "TEMPLATE": "export { env } from 'cloudflare:workers'; import(\"cloudflare:workers\")",
        "RE": 'from "cloudflare:workers"',
        "self": "echo 1"}, got
    r = await walls.attack("rewrite", "/child")
    assert (r.status_code, r.text) == (200, "child function"), r.text
    r = await walls.attack("rewrite", "/dynamic")
    assert r.status_code == 200, r.text
    # Workerd's own module, reached with a specifier built at run time: no minter in it.
    assert r.json()["minter"] == "undefined" and r.json()["envMinter"] == "undefined", r.text
    await walls.assert_victim_intact()


# The minted stub is a stub of the gateway's own WdlSelf entrypoint: its instance fields
# (the gateway's env and ctx, with the platform's bindings) and its machinery are asked
# for as properties and as methods.
MACHINERY = r"""
import { WorkerEntrypoint, exports } from "cloudflare:workers";

export class Echo extends WorkerEntrypoint {
  who() { return "echo"; }
}

async function attempt(fn) {
  try {
    const v = await fn();
    let shown;
    try { shown = JSON.stringify(v); } catch (e) { shown = "unserializable"; }
    return { ok: typeof v, shown: shown === undefined ? null : String(shown).slice(0, 300) };
  } catch (e) { return { error: String(e && e.message || e).slice(0, 200) }; }
}

export default {
  async fetch(request, env) {
    const s = await exports.Echo({ props: { n: 1 } });
    const out = {};
    for (const name of ["env", "ctx", "constructor", "dup", "toJSON", "__proto__",
                        "toString", "valueOf", "hasOwnProperty"]) {
      out["get:" + name] = await attempt(async () => await s[name]);
      out["call:" + name] = await attempt(() => s[name]());
    }
    out["env.LOADER"] = await attempt(async () => typeof (await s.env.LOADER));
    out["env.keys"] = await attempt(async () => Object.keys(await s.env));
    out["ctx.props"] = await attempt(async () => await s.ctx.props);
    out["ctx.exports"] = await attempt(async () => typeof (await s.ctx.exports));
    out.who = await attempt(() => s.who());
    return Response.json(out);
  },
};
"""

# What only the platform holds: the gateway's bindings and the minted stub's pinning.
SECRETS = ("LOADER", "CHILDREN", "INTERNAL", "namespace", "version", "attacker")


async def test_a_self_stub_does_not_give_out_the_gateways_env_or_ctx(walls: Walls) -> None:
    await walls.attacker.deploy_js("machinery", MACHINERY)
    r = await walls.attack("machinery", "/")
    assert r.status_code == 200, r.text
    got: dict[str, Any] = r.json()
    assert got["who"] == {"ok": "string", "shown": '"echo"'}, got
    leaked = {k: v for k, v in got.items()
              if k != "who" and "ok" in v and v["ok"] not in ("undefined",)
              and any(s in str(v.get("shown")) for s in SECRETS)}
    assert leaked == {}, got
    await walls.assert_victim_intact()
