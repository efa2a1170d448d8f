"""Red team, fair shares, queues: many queues of one namespace must not hold the queue
service's memory without bound.

Each queue's backlog held by a replica (read, not finished: a queue without a consumer
keeps its messages in the consumer's memory) was bounded (64 MiB), but a namespace may
have 1,000 queues: one deployer token could make one replica hold 64 GiB, and the
machine's memory is every tenant's. Measured on main with the bounds below: 4 queues
of one namespace accepted 4 x 3.5 MB = 14 MB, the namespace's bound (8 MB) ignored.

A backlog counted the messages' *bodies* only: a 1-byte message costs the consumer
about 850 bytes of memory to hold (measured with tracemalloc: the delivery, its message,
the tracker's and the consumer's entries), so a 64 MiB bound let a queue of 1-byte
messages hold ~57 GB. Measured on main: 20,000 1-byte messages (~17 MB held) accepted by
a queue whose bound was 4 MB.

The real servers (Kafka, Redis, PostgreSQL, S3, workerd), the queue service in-process;
the bounds are set low for the test (WALLS_ENV) so it takes seconds.
"""

from __future__ import annotations

import pytest

from tests.security.rig import Walls

pytestmark = [pytest.mark.security,
              pytest.mark.parametrize("walls", ["servers"], indirect=True)]

WALLS_COMPONENTS = ("queues",)
QUEUE_BACKLOG = 4_000_000  # one queue's bound here (the platform default: 64 MiB)
NAMESPACE_BACKLOG = 8_000_000  # one namespace's, all its queues (default: 256 MiB)
WALLS_ENV = {"WDL_QUEUE_MAX_BACKLOG_BYTES": str(QUEUE_BACKLOG),
             "WDL_QUEUE_MAX_NAMESPACE_BACKLOG_BYTES": str(NAMESPACE_BACKLOG)}
QUEUES = 4
PER_QUEUE = 3_500_000  # under each queue's bound: only the namespace's can refuse
TINY = 20_000  # 1-byte messages sent to one queue
HELD_PER_MESSAGE = 850  # bytes the consumer holds for a 1-byte message (tracemalloc)
# Sends race the consumer's reading: what arrives in a few polls past the bound.
SLACK = 2_000_000

FILLER_JS = """\
export default {
  async fetch(request, env) {
    const body = "x".repeat(125000);
    const sent = [];
    let error = null;
    for (let q = 0; q < {queues} && error === null; q++) {
      let n = 0;
      try {
        while (n < {per_queue}) {
          await env["Q" + q].sendBatch([{ body, contentType: "text" },
                                        { body, contentType: "text" }]);
          n += 250000;
        }
      } catch (err) {
        error = String(err.message);
      }
      sent.push(n);
    }
    return Response.json({ sent, error });
  },
};
""".replace("{queues}", str(QUEUES)).replace("{per_queue}", str(PER_QUEUE))

TINY_JS = """\
export default {
  async fetch(request, env) {
    let sent = 0;
    let error = null;
    try {
      while (sent < {tiny}) {
        await env.TINY.sendBatch(Array.from({ length: 100 }, () => ({ body: 1 })));
        sent += 100;
      }
    } catch (err) {
      error = String(err.message);
    }
    return Response.json({ sent, error });
  },
};
""".replace("{tiny}", str(TINY))

TINY_TOML = """
[[queues.producers]]
binding = "TINY"
queue = "tiny"
"""

FILLER_TOML = "".join(f"""
[[queues.producers]]
binding = "Q{q}"
queue = "many{q}"
""" for q in range(QUEUES))


async def test_many_queues_of_one_namespace_have_one_backlog_bound(walls: Walls) -> None:
    await walls.attacker.deploy_js("many", FILLER_JS, FILLER_TOML)
    r = await walls.attack("many", "/", timeout=180)
    assert r.status_code == 200, r.text
    doc = r.json()
    total = sum(doc["sent"])
    assert total <= NAMESPACE_BACKLOG + SLACK, (
        f"{total} bytes held for one namespace over {len(doc['sent'])} queues "
        f"(per queue {doc['sent']}), its bound {NAMESPACE_BACKLOG}")
    assert doc["error"] is not None and "backlog" in doc["error"], doc
    assert doc["error"].startswith("Queue sendBatch failed:"), doc
    await walls.assert_victim_intact()


async def test_tiny_messages_count_what_they_cost_to_hold(walls: Walls) -> None:
    await walls.attacker.deploy_js("tiny", TINY_JS, TINY_TOML)
    r = await walls.attack("tiny", "/", timeout=180)
    assert r.status_code == 200, r.text
    doc = r.json()
    held = doc["sent"] * HELD_PER_MESSAGE
    assert held <= QUEUE_BACKLOG + SLACK, (
        f"{doc['sent']} 1-byte messages accepted by one queue: about {held} bytes of the "
        f"consumer's memory against a backlog bound of {QUEUE_BACKLOG}")
    assert doc["error"] is not None and "backlog" in doc["error"], doc
    await walls.assert_victim_intact()
