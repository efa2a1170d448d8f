"""Red team, fair shares, queues: many queues of one namespace must not hold the queue
service's memory without bound.

Each queue's backlog held by a replica (read, not finished: a queue without a consumer
keeps its messages in the consumer's memory) was bounded (64 MiB), but a namespace may
have 1,000 queues: one deployer token could make one replica hold 64 GiB, and the
machine's memory is every tenant's. Measured on main with the bounds below: 4 queues
of one namespace accepted 4 x 3.5 MB = 14 MB, the namespace's bound (8 MB) ignored.

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
