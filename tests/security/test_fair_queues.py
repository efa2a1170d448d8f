"""Noisy neighbours, queues: one namespace must not starve or wedge the queue consumer.

Found by attacking the consumer with a namespace-scoped deployer token (issue 23):
slow `queue()` handlers of one namespace filled the service's shared 256-connection
pool to the gateway (another namespace's message took 51.7 s); a handler slower than
the invoke timeout was redelivered forever without counting an attempt; a `v8` message
the gateway cannot decode (JSON.stringify overridden for one send) or nested too deep
was redelivered forever and never dead-lettered; messages parked on a queue without a
consumer were re-appended every ~35 s for ever; a queue's backlog had no bound.

The real servers (Kafka, Redis, PostgreSQL, S3, workerd), the queue service in-process;
the invoke timeout and the backlog bound are set low for the test (WALLS_ENV) so each
test takes seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from tests.security.rig import ATTACKER, VICTIM, Actor, Walls

pytestmark = [pytest.mark.security,
              pytest.mark.parametrize("walls", ["servers"], indirect=True)]

WALLS_COMPONENTS = ("queues",)
INVOKE_TIMEOUT_S = 10  # the consumer's invoke timeout here (the platform default: 60 s)
BACKLOG_BYTES = 8_000_000  # one queue's backlog bound here (the platform default: 64 MiB)
WALLS_ENV = {"WDL_QUEUE_INVOKE_TIMEOUT_S": str(INVOKE_TIMEOUT_S),
             "WDL_QUEUE_MAX_BACKLOG_BYTES": str(BACKLOG_BYTES)}

# The victim's message is delivered within this while the attacker's handlers hold
# every connection they can get: shorter than the invoke timeout, so it is not met
# by the attacker's batches timing out, only by the victim's own share.
VICTIM_BOUND_S = 5.0
HOG_QUEUES = 2
HOGS = 300  # more than the pool the consumer had (256 connections)
HOG_SLEEP_S = 60  # longer than any bound here: a hog holds its slot until it times out
# A poisoned or timed-out message reaches the dead-letter queue within this:
# (1 + max_retries) deliveries of at most the invoke timeout each, plus slack.
DLQ_BOUND_S = 2 * INVOKE_TIMEOUT_S + 10.0
# Parked messages are watched this long: more than the old consumer's re-append round
# (30 s held + a 5 s sweep), so today's main is seen re-appending them.
PARK_WATCH_S = 45.0
PARKED_BYTES = 5_000_000

VICTIM_JS = """\
export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname;
    if (path === "/send") {
      const mark = String(Date.now()) + "-" + Math.random();
      await env.INBOX.send({ mark });
      return new Response(mark);
    }
    return new Response((await env.IKV.get("got")) ?? "");
  },
  async queue(batch, env) {
    for (const m of batch.messages) await env.IKV.put("got", m.body.mark);
  },
};
"""

VICTIM_TOML = """
[[kv_namespaces]]
binding = "IKV"
id = "inbox-kv"

[[queues.producers]]
binding = "INBOX"
queue = "inbox"

[[queues.consumers]]
queue = "inbox"
max_batch_size = 1
max_batch_timeout = 0
"""

HOG_JS = """\
export default {
  async fetch(request, env) {
    let sent = 0;
    for (let q = 0; q < {queues}; q++) {
      for (let i = 0; i < {per_queue}; i += 100) {
        const n = Math.min(100, {per_queue} - i);
        await env["HOG" + q].sendBatch(Array.from({ length: n }, (_, j) => ({ body: i + j })));
        sent += n;
      }
    }
    return new Response(String(sent));
  },
  async queue(batch) {
    await new Promise((resolve) => setTimeout(resolve, {sleep_ms}));
  },
};
""".replace("{queues}", str(HOG_QUEUES)).replace("{per_queue}", str(HOGS // HOG_QUEUES)) \
   .replace("{sleep_ms}", str(HOG_SLEEP_S * 1000))

HOG_TOML = "".join(f"""
[[queues.producers]]
binding = "HOG{q}"
queue = "hog{q}"

[[queues.consumers]]
queue = "hog{q}"
max_batch_size = 1
max_batch_timeout = 0
max_concurrency = 250
max_retries = 100
""" for q in range(HOG_QUEUES))

POISON_JS = """\
export default {
  async fetch(request, env) {
    const real = JSON.stringify;
    // The tenant wrapper serialises a `v8` body with JSON.stringify: overridden for one
    // send each, it stores text the gateway's decoder cannot turn back into a value.
    const bodies = ["{not json", "[".repeat(60000) + "]".repeat(60000)];
    for (const text of bodies) {
      JSON.stringify = () => text;
      try {
        await env.POISON.send({ a: 1 }, { contentType: "v8" });
      } finally {
        JSON.stringify = real;
      }
    }
    return new Response(String(bodies.length));
  },
  async queue(batch) {
    for (const m of batch.messages) m.ack();
  },
};
"""

POISON_TOML = """
[[queues.producers]]
binding = "POISON"
queue = "poison"

[[queues.consumers]]
queue = "poison"
max_batch_size = 10
max_batch_timeout = 0
max_retries = 1
dead_letter_queue = "poison-dlq"
"""

SLEEPER_JS = """\
export default {
  async fetch(request, env) {
    await env.SLEEPY.send("zzz");
    return new Response("sent");
  },
  async queue(batch) {
    await new Promise((resolve) => setTimeout(resolve, 120000));
  },
};
"""

SLEEPER_TOML = """
[[queues.producers]]
binding = "SLEEPY"
queue = "sleepy"

[[queues.consumers]]
queue = "sleepy"
max_batch_timeout = 0
max_retries = 0
dead_letter_queue = "sleepy-dlq"
"""

# Fills a queue nobody consumes: 2 x 125,000-byte messages a call (the batch limit).
FILLER_JS = """\
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const limit = Number(url.searchParams.get("bytes"));
    const queue = url.searchParams.get("q") === "flood" ? env.FLOOD : env.PARKQ;
    const body = "x".repeat(125000);
    let sent = 0;
    try {
      while (sent < limit) {
        await queue.sendBatch([{ body, contentType: "text" }, { body, contentType: "text" }]);
        sent += 250000;
      }
    } catch (err) {
      return Response.json({ sent, error: String(err.message) });
    }
    return Response.json({ sent, error: null });
  },
};
"""

FILLER_TOML = """
[[queues.producers]]
binding = "PARKQ"
queue = "parked"

[[queues.producers]]
binding = "FLOOD"
queue = "flood"
"""


def _victim(walls: Walls) -> Actor:
    return Actor("victim-admin", walls.admin.env, walls.admin.workdir, VICTIM)


async def _health(walls: Walls) -> dict[str, Any]:
    url = walls.extra["platform"].queues.url
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(f"{url}/healthz",
                             headers={"authorization": f"Bearer {walls.internal_token}"})
    return dict(r.json())


async def _victim_delivery_s(walls: Walls, bound: float) -> float | None:
    """Send one message to the victim's queue; seconds until its consumer had it."""
    r = await walls.get(walls.host(VICTIM), "/inbox/send", timeout=30)
    assert r.status_code == 200, r.text
    mark, started = r.text, time.monotonic()
    while time.monotonic() - started < bound:
        got = await walls.get(walls.host(VICTIM), "/inbox/got", timeout=30)
        if got.text == mark:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    return None


async def _dead_letters(actor: Actor, queue: str, want: int, bound: float) -> list[Any]:
    started = time.monotonic()
    rows: list[Any] = []
    while time.monotonic() - started < bound:
        rows = (await actor.wdl("queues", "dlq", "list", queue, "--ns", ATTACKER,
                                "--json")).json()
        if len(rows) >= want:
            break
        await asyncio.sleep(1.0)
    return rows


async def test_slow_handlers_do_not_hold_the_victims_delivery(walls: Walls) -> None:
    await _victim(walls).deploy(_victim(walls).project("inbox", VICTIM_JS, VICTIM_TOML))
    # The victim's consumer works before the attack (and its version is warm).
    assert await _victim_delivery_s(walls, 30.0) is not None
    await walls.attacker.deploy_js("hog", HOG_JS, HOG_TOML)
    r = await walls.attack("hog", "/", timeout=60)
    assert (r.status_code, r.text) == (200, str(HOGS)), r.text
    await asyncio.sleep(3.0)  # the consumer hands the hogs to the gateway
    try:
        took = await _victim_delivery_s(walls, VICTIM_BOUND_S)
        assert took is not None, (
            f"the victim's message waited more than {VICTIM_BOUND_S:.0f} s behind "
            f"{HOGS} slow batches of another namespace")
    finally:
        for q in range(HOG_QUEUES):  # their messages go with them
            await walls.attacker.wdl("queues", "delete", f"hog{q}", "--ns", ATTACKER,
                                     "--force")


async def test_undecodable_and_deep_messages_are_dead_lettered(walls: Walls) -> None:
    await walls.attacker.deploy_js("poison", POISON_JS, POISON_TOML)
    r = await walls.attack("poison", "/", timeout=60)
    assert (r.status_code, r.text) == (200, "2"), r.text
    rows = await _dead_letters(walls.attacker, "poison-dlq", 2, DLQ_BOUND_S)
    assert len(rows) == 2, (
        f"after {DLQ_BOUND_S:.0f} s the dead-letter queue holds {len(rows)} of the 2 "
        "messages the gateway cannot decode (max_retries = 1)")
    assert {row["attempts"] for row in rows} == {1}


async def test_a_handler_past_the_timeout_counts_an_attempt(walls: Walls) -> None:
    await walls.attacker.deploy_js("sleeper", SLEEPER_JS, SLEEPER_TOML)
    r = await walls.attack("sleeper", "/", timeout=60)
    assert r.status_code == 200, r.text
    rows = await _dead_letters(walls.attacker, "sleepy-dlq", 1, DLQ_BOUND_S)
    assert len(rows) == 1, (
        f"a handler slower than the {INVOKE_TIMEOUT_S} s invoke timeout (max_retries = 0) "
        f"was not dead-lettered within {DLQ_BOUND_S:.0f} s")


async def test_parked_messages_are_not_re_appended_without_bound(walls: Walls) -> None:
    await walls.attacker.deploy_js("filler", FILLER_JS, FILLER_TOML)
    r = await walls.attack("filler", f"/?q=parked&bytes={PARKED_BYTES}", timeout=120)
    assert r.status_code == 200 and r.json()["error"] is None, r.text
    before = await _health(walls)
    started = time.monotonic()
    victim_bytes = 0
    while time.monotonic() - started < PARK_WATCH_S:  # the victim's traffic goes on
        assert await _victim_delivery_s(walls, 30.0) is not None
        victim_bytes += 60  # one small JSON message each
        await asyncio.sleep(1.0)
    after = await _health(walls)
    grown = after["parked_bytes"] - before.get("parked_bytes", 0) \
        if "parked_bytes" in after else 125_000 * (after["parked"] - before["parked"])
    # Re-appending parked messages moves the commit past them; it is worth it only for
    # as much of others' traffic as it frees: never more bytes than that traffic.
    assert grown <= max(victim_bytes, 0), (
        f"{grown} bytes of parked messages were appended again in {PARK_WATCH_S:.0f} s "
        f"for {victim_bytes} bytes of other traffic")


async def test_a_queue_backlog_has_a_bound(walls: Walls) -> None:
    r = await walls.attack("filler", f"/?q=flood&bytes={BACKLOG_BYTES + 4_000_000}",
                           timeout=120)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["error"] is not None and "backlog" in doc["error"], (
        f"{doc['sent']} bytes sent to a queue without a consumer, none refused "
        f"(bound {BACKLOG_BYTES})")
    assert doc["error"].startswith("Queue sendBatch failed:"), doc
    # Sends race the consumer's reading: allow what arrives in a few polls past the bound.
    assert doc["sent"] <= BACKLOG_BYTES + 2_000_000, doc
