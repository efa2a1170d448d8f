"""Self stubs (`exports.X({props})`) where the platform mints them (issue 25): in a
Durable Object (the objects process mints them: workerd/objects/objects.js) and in a
worker handing one to a loader child, on `wdl dev` as a user runs it. The library case
(@cloudflare/dynamic-workflows) is test_dynamic_workflows.py; the walls are
tests/security/test_self_stub_walls.py."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.integration.test_dataplane_dev import Dev

pytestmark = pytest.mark.integration

JS = """\
import { DurableObject, WorkerEntrypoint, exports } from "cloudflare:workers";

export class Echo extends WorkerEntrypoint {
  who(n) { return { from: "Echo", props: this.ctx.props, n }; }
}

export class Counter extends DurableObject {
  async viaSelf(tag) {
    const direct = await exports.Echo({ props: { tag } }).who(1);
    const stub = await exports.Echo({ props: { tag: tag + "!" } });
    return { direct, awaited: await stub.who(2), typeofEcho: typeof exports.Echo };
  }
}

const CHILD = `export default { async fetch(request, env) {
  return Response.json([await env.ECHO.who(3), await env.ECHO.who(4)]);
} };`;

export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname;
    if (path === "/do") return Response.json(await env.COUNTER.getByName("a").viaSelf("do"));
    const child = env.LOADER.get("c", async () => ({
      compatibilityDate: "2025-11-17", mainModule: "c.js", modules: { "c.js": CHILD },
      env: { ECHO: exports.Echo({ props: { customer: "c-42" } }) }, globalOutbound: null }));
    return child.getEntrypoint().fetch("http://child/");
  },
};
"""

TOML = """\
name = "selfie"
main = "src/index.js"
compatibility_date = "2025-11-17"
worker_loaders = [{binding = "LOADER"}]

[[durable_objects.bindings]]
name = "COUNTER"
class_name = "Counter"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Counter"]
"""


def test_self_stubs_in_a_durable_object_and_a_child(dev: Dev, tmp_path: Path) -> None:
    project = tmp_path / "selfie"
    (project / "src").mkdir(parents=True)
    (project / "wrangler.toml").write_text(TOML)
    (project / "src" / "index.js").write_text(JS)
    dev.start()
    dev.cli("ns", "create", "selfs")
    dev.cli("deploy", str(project), "--ns", "selfs")
    base = f"http://127.0.0.1:{dev.gateway_port}/selfie"
    headers = {"host": "selfs.workers.local"}
    r = httpx.get(base + "/do", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"direct": {"from": "Echo", "props": {"tag": "do"}, "n": 1},
                        "awaited": {"from": "Echo", "props": {"tag": "do!"}, "n": 2},
                        "typeofEcho": "function"}
    r = httpx.get(base + "/child", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == [{"from": "Echo", "props": {"customer": "c-42"}, "n": n}
                        for n in (3, 4)]
