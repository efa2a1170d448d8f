"""Red team, tenant data: what the outside world sends a tenant's app must not break the
tenant's storage.

A tenant's app stores what its users send (file names, labels): in JavaScript a
string may hold a *lone surrogate* (`JSON.parse('"\\ud800"')`), which no UTF-8 text
can. Cloudflare's R2 binding turns it into U+FFFD, as workerd turns every JS string
into UTF-8. The R2 data service took it as it was: the object was *stored*, the
put answered 500 (the answer could not be encoded), and from then on every listing
of the bucket answered 500 - one request of an anonymous user broke the tenant's
bucket for good (held for KV and D1).
"""

from __future__ import annotations

import pytest

from tests.security.rig import Walls

pytestmark = pytest.mark.security

APP = """\
export default {
  async fetch(request, env) {
    const u = new URL(request.url);
    if (u.pathname === "/upload") {
      const { name, label } = await request.json();
      try {
        const o = await env.FILES.put(name, "data", { customMetadata: { label } });
        return Response.json({ stored: o.key });
      } catch (e) {
        return Response.json({ refused: String(e.message) });
      }
    }
    if (u.pathname === "/list") {
      try {
        const listed = await env.FILES.list({ include: ["customMetadata"] });
        return Response.json({ keys: listed.objects.map((o) => o.key),
                               labels: listed.objects.map((o) => o.customMetadata.label) });
      } catch (e) {
        return Response.json({ broken: String(e.message) }, { status: 500 });
      }
    }
    return new Response("?", { status: 404 });
  },
};
"""

TOML = """
[[r2_buckets]]
binding = "FILES"
bucket_name = "uploads"
"""


# The JSON text an anonymous user sends, escapes as they are on the wire.
@pytest.mark.parametrize("body", [
    '{"name": "report-\\ud800.pdf", "label": "fine"}',
    '{"name": "fine.pdf", "label": "x\\udfff"}',
], ids=["key", "metadata"])
async def test_a_lone_surrogate_from_a_user_does_not_break_the_bucket(walls: Walls,
                                                                      body: str) -> None:
    await walls.attacker.deploy_js("uploads", APP, TOML)
    r = await walls.attack("uploads", "/upload", method="POST", content=body,
                           headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    answer = r.json()
    # Stored as Cloudflare stores it (U+FFFD for the lone surrogate), or refused cleanly.
    assert "stored" in answer or "internal error" not in answer["refused"], answer
    listed = await walls.attack("uploads", "/list")
    assert listed.status_code == 200, listed.text
    if "stored" in answer:
        assert answer["stored"] in listed.json()["keys"]
        assert "\ufffd" in answer["stored"] + "".join(listed.json()["labels"])
    await walls.assert_victim_intact()
