"""Tail Workers' outbox in the gateway (workerd/gateway/tailbatch.js), run under node:
bounded per consumer by events and bytes, per namespace and per process by bytes,
batches bounded by events and bytes, drops counted by reason, idle queues forgotten;
and the TraceItem shape a tail worker gets."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from services.dataplane.config import workerd_dir


def run(body: str) -> Any:
    node = shutil.which("node")
    assert node is not None, "node is required (it installs workerd via npm)"
    url = (workerd_dir() / "gateway" / "tailbatch.js").as_uri()
    script = (f"import {{ TailOutbox, traceItem, LIMITS }} from {json.dumps(url)};\n"
              f"const out = (() => {{ {body} }})();\nconsole.log(JSON.stringify(out));")
    done = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_consumer_queue_is_bounded_by_events_and_bytes() -> None:
    out = run("""
      const o = new TailOutbox({ queueEvents: 3, queueBytes: 250 });
      const took = [];
      for (let i = 0; i < 5; i++) took.push(o.offer("ns", "tw", { i }, 10));
      const q = o.queue("ns", "tw");
      const byEvents = [took, q.items.length, o.report()];
      const p = new TailOutbox({ queueEvents: 100, queueBytes: 250 });
      const fits = [p.offer("ns", "tw", {}, 200), p.offer("ns", "tw", {}, 60),
                    p.offer("ns", "tw", {}, 50)];
      return [byEvents, fits, p.report()];
    """)
    assert out[0] == [[True, True, True, False, False], 3,
                      {"delivered": 0, "dropped": {"overflow": 2}}]
    assert out[1] == [True, False, True]  # 200 + 60 > 250; 200 + 50 fits
    assert out[2] == {"delivered": 0, "dropped": {"overflow": 1}}


def test_one_namespace_cannot_fill_the_gateway() -> None:
    out = run("""
      const o = new TailOutbox({ queueBytes: 1000, namespaceBytes: 300, totalBytes: 500 });
      let flood = 0;
      // One namespace, many consumers: its share stops it, not the process total.
      for (let c = 0; c < 10; c++) {
        for (let i = 0; i < 10; i++) flood += o.offer("evil", "c" + c, {}, 50);
      }
      const other = [o.offer("good", "tw", {}, 100), o.offer("good", "tw2", {}, 100)];
      const third = o.offer("third", "tw", {}, 100);  // 300 + 200 = the process total
      return [flood, other, third, o.bytes, o.report().dropped.overflow];
    """)
    flood, other, third, total, overflow = out
    assert flood == 6  # 300 bytes of 50
    assert other == [True, True]
    assert third is False and total == 500
    assert overflow == 100 - 6 + 1


def test_batches_are_bounded_by_events_and_bytes_and_queues_are_forgotten() -> None:
    out = run("""
      const o = new TailOutbox({ batchEvents: 4, batchBytes: 100 });
      for (let i = 0; i < 10; i++) o.offer("ns", "tw", { i }, 30);
      o.offer("ns", "tw", { big: true }, 500);  // larger than a batch: goes alone
      o.offer("ns", "tw", { i: 10 }, 30);
      const q = o.queue("ns", "tw");
      const sizes = [];
      let b;
      while ((b = o.take(q)).length) sizes.push(b.map((e) => e.big ? "big" : e.i));
      const before = o.queues.size;
      o.release(q);
      return [sizes, o.bytes, o.nsBytes.size, before, o.queues.size, q.taken, q.queued];
    """)
    sizes, total, namespaces, before, after, taken, queued = out
    assert sizes == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9], ["big"], [10]]
    assert (total, namespaces, before, after, taken, queued) == (0, 0, 1, 0, 12, 12)


def test_consumers_per_process_are_bounded() -> None:
    out = run("""
      const o = new TailOutbox({ consumers: 2 });
      return [o.offer("a", "x", {}, 1), o.offer("b", "x", {}, 1), o.offer("c", "x", {}, 1),
              o.offer("a", "x", {}, 1), o.report()];
    """)
    assert out == [True, True, False, True, {"delivered": 0, "dropped": {"overflow": 1}}]


def test_trace_item_has_cloudflares_shape() -> None:
    out = run("""
      const item = { entrypoint: undefined, outcome: "exception",
        event: { request: { url: "http://x/app/boom", method: "POST",
                            headers: { Host: "x", Authorization: "Bearer s", cookie: "c=1" } } },
        exceptions: [{ name: "TypeError", message: "kaboom", timestamp: 5 }] };
      const normalized = { namespace: "ns", worker: "app", version: "v1", ts: 1000,
        kind: "fetch", entrypoint: null, method: "POST", url: "http://x/app/boom",
        status: null, outcome: "exception", duration_ms: 3,
        logs: [{ level: "warn", message: ["hi", { n: 1 }], ts: 1001 }],
        exceptions: [{ name: "TypeError", message: "kaboom", stack: null }],
        truncated: false };
      const cron = traceItem({ event: { rpcMethod: "scheduled" } },
        { ...normalized, kind: "scheduled", url: null, method: null, logs: [], exceptions: [],
          outcome: "ok" });
      return [traceItem(item, normalized), cron.event];
    """)
    trace, cron = out
    assert trace == {
        "scriptName": "app", "scriptVersion": {"id": "v1"},
        "event": {"request": {"url": "http://x/app/boom", "method": "POST",
                              "headers": {"host": "x", "authorization": "REDACTED",
                                          "cookie": "REDACTED"}}},
        "eventTimestamp": 1000,
        "logs": [{"message": ["hi", {"n": 1}], "level": "warn", "timestamp": 1001}],
        "exceptions": [{"name": "TypeError", "message": "kaboom", "timestamp": 5}],
        "diagnosticsChannelEvents": [], "scriptTags": [], "outcome": "exception",
        "executionModel": "stateless", "truncated": False, "cpuTime": 0, "wallTime": 3,
    }
    assert cron == {"cron": "", "scheduledTime": 1000}
