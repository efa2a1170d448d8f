"""Red team, fair shares: tenant JSON nested deep must not raise `RecursionError` in the
platform's Python services (issue 23: "decoders of tenant data are iterative or
depth-bounded").

The tenant wrappers (workerd/tenant/*.js) run in the tenant's own isolate, so a tenant
can replace the globals they use (`JSON.stringify`, `String`) or hand them objects that
lie about themselves (`{length, map}` for an array of keys). What they then pass on
reaches the D1 service, the R2 and KV data service as JSON nested thousands deep.
Found: each such request raised `RecursionError` in the service (msgspec and `json`
recurse once a level), answered 500 and wrote an ERROR record with a traceback to the
platform's log — which the per-call-site rate limit lets through always (errors pass):
one tenant writes the platform's log as fast as it can loop. Measured on main: 5 ERROR
tracebacks for 5 requests for each of D1, R2 and KV (the tenant saw "D1 service
answered 500", "internal error (10001)", "500 Internal Server Error"); a deploy with a
`json` var of 5 KiB of brackets answered 500 at the control API (an ERROR record each).

Bound: each attempt answers the tenant a clean refusal, and the platform writes no
record about a recursion (the attack repeats ATTEMPTS times a vector).
"""

from __future__ import annotations

import base64
import logging

import httpx
import pytest

from tests.security.rig import ATTACKER, Walls

pytestmark = [pytest.mark.security,
              pytest.mark.parametrize("walls", ["servers"], indirect=True)]

# Deeper than the recursion limit of Python (1,000 frames) and msgspec; shallow enough
# for V8 (its RPC serialiser and JSON run out of stack at a few thousand levels).
DEPTH = 1500
ATTEMPTS = 5  # per vector: each must be refused alike, none must reach the log

APP = """\
const DEPTH = {depth};
const deep = () => "[".repeat(DEPTH) + "]".repeat(DEPTH);
const deepValue = () => JSON.parse(deep());

async function attempt(what, env) {
  try {
    if (what === "d1") {
      const real = JSON.stringify;
      JSON.stringify = () => deep();  // the wrapper's body for the D1 service
      try {
        await env.DB.prepare("SELECT 1").all();
      } finally {
        JSON.stringify = real;
      }
    } else if (what === "r2") {
      const real = globalThis.String;
      globalThis.String = (v) => v;  // custom metadata values are String(v)'d
      try {
        await env.FILES.put("k", "v", { customMetadata: { a: deepValue() } });
      } finally {
        globalThis.String = real;
      }
    } else if (what === "kv") {
      // An array of keys whose map() yields a deep value as the key names.
      const keys = ["a"];
      keys.map = () => [deepValue()];
      await env.KV.get(keys);
    }
    return "accepted";
  } catch (e) {
    return "refused: " + String(e && e.message);
  }
}

export default {
  async fetch(request, env) {
    const what = new URL(request.url).searchParams.get("what");
    return new Response(await attempt(what, env));
  },
};
""".replace("{depth}", str(DEPTH))

TOML = """
[[d1_databases]]
binding = "DB"
database_name = "deep-db"

[[r2_buckets]]
binding = "FILES"
bucket_name = "deep-files"

[[kv_namespaces]]
binding = "KV"
id = "deep-kv"
"""


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, RecursionError) or "RecursionError" in text or \
                "maximum recursion depth" in text:
            self.records.append(record)


@pytest.mark.parametrize("what", ["d1", "r2", "kv"])
async def test_deep_json_from_a_tenant_raises_no_recursion_error(walls: Walls,
                                                                  what: str) -> None:
    await walls.attacker.deploy_js("deep", APP, TOML)
    recorder = _Recorder()
    logging.getLogger().addHandler(recorder)
    try:
        answers = []
        for _ in range(ATTEMPTS):
            r = await walls.attack("deep", f"/?what={what}", timeout=60)
            assert r.status_code == 200, r.text
            answers.append(r.text)
    finally:
        logging.getLogger().removeHandler(recorder)
    assert not recorder.records, (
        f"{what}: {len(recorder.records)} records about a recursion in the platform's log "
        f"for {ATTEMPTS} requests; the first: {recorder.records[0].getMessage()[:300]}")
    for text in answers:
        assert text.startswith("refused: "), f"{what}: {text[:300]}"
        # The refusal names the problem, not a platform failure.
        assert "answered 500" not in text and "internal" not in text.lower(), \
            f"{what}: {text[:300]}"
    await walls.assert_victim_intact()



async def test_a_deep_json_binding_raises_no_recursion_error(walls: Walls) -> None:
    """A `json` binding (a wrangler var that is not a string) is JSON text the platform
    parses to build the worker's env: 5 KiB of it nests 2,500 deep."""
    js = 'export default { fetch(r, env) { return new Response(typeof env.DEEP); } };'
    deep = "[" * 2500 + "]" * 2500
    body = {"main_module": "index.js", "compatibility_date": "2025-11-17",
            "modules": [{"name": "index.js", "type": "esm",
                         "content_b64": base64.b64encode(js.encode()).decode()}],
            "bindings": [{"name": "DEEP", "kind": "json", "value": deep}]}
    recorder = _Recorder()
    logging.getLogger().addHandler(recorder)
    try:
        async with httpx.AsyncClient(base_url=walls.api, timeout=60, headers={
                "authorization": f"Bearer {walls.attacker.env['WDL_TOKEN']}"}) as api:
            r = await api.post(f"/v1/namespaces/{ATTACKER}/workers/deepvar/versions",
                               params={"promote": "true"}, json=body)
        statuses = []
        if r.status_code == 201:
            for _ in range(ATTEMPTS):
                statuses.append((await walls.attack("deepvar", "/", timeout=60)).status_code)
    finally:
        logging.getLogger().removeHandler(recorder)
    assert not recorder.records, (
        f"{len(recorder.records)} records about a recursion in the platform's log (deploy "
        f"{r.status_code}, answers {statuses}); the first: "
        f"{recorder.records[0].getMessage()[:300]}")
    # Refused at deploy with a clear error, or served.
    assert r.status_code in (201, 400, 413, 422), r.text
    await walls.assert_victim_intact()
