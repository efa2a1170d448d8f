// Queue conformance worker: run under Miniflare (tests/miniflare/queue_reference.mjs) and on
// the platform (tests/integration/test_queue_binding.py); the transcripts are compared call
// by call. GET / runs the producer calls (answers, refusals) and sends the consumer probes;
// queue() reports each delivery to env.SINK (a server the test owns).
function outcome(value) {
  return value === undefined ? null : value;
}

export default {
  async fetch(request, env) {
    const out = [];
    async function t(name, f) {
      try {
        out.push([name, "ok", outcome(await f())]);
      } catch (e) {
        out.push([name, "throw", e.constructor.name, e.message]);
      }
    }
    const Q = env.OUT;  // producer calls go to `out`, whose consumer only acks
    await t("send json", () => Q.send({ a: 1 }));
    await t("send date default", () => Q.send(new Date(5)));
    await t("send text", () => Q.send("hi", { contentType: "text" }));
    await t("send text non-string", () => Q.send(5, { contentType: "text" }));
    await t("send bytes", () => Q.send(new Uint8Array([1, 2]), { contentType: "bytes" }));
    await t("send bytes string", () => Q.send("x", { contentType: "bytes" }));
    await t("send bad ctype", () => Q.send("x", { contentType: "nope" }));
    await t("send undefined", () => Q.send(undefined));
    await t("send fn json", () => Q.send(() => 1, { contentType: "json" }));
    await t("send too big", () => Q.send("x".repeat(128000 + 1), { contentType: "text" }));
    await t("send limit", () => Q.send("x".repeat(128000), { contentType: "text" }));
    await t("send just under", () => Q.send("x".repeat(127000), { contentType: "text" }));
    await t("send delay neg", () => Q.send("x", { delaySeconds: -1 }));
    await t("send delay over 12h", () => Q.send("x", { delaySeconds: 43201 }));
    await t("send delay str", () => Q.send("x", { delaySeconds: "5" }));
    await t("batch empty", () => Q.sendBatch([]));
    await t("batch 101", () => Q.sendBatch(Array.from({ length: 101 }, (_, i) => ({ body: i }))));
    await t("batch 100", () => Q.sendBatch(Array.from({ length: 100 }, (_, i) => ({ body: i }))));
    await t("batch 300k", () => Q.sendBatch(Array.from({ length: 3 }, () => (
      { body: "x".repeat(100 * 1024), contentType: "text" }))));
    await t("batch not array", () => Q.sendBatch("x"));
    await t("batch no body", () => Q.sendBatch([{}]));
    await t("batch delays", () => Q.sendBatch([{ body: 1, delaySeconds: 1 }], { delaySeconds: 2 }));
    await t("send v8 map", () => Q.send(new Map([[1, 2]]), { contentType: "v8" }));
    await t("send json map", () => Q.send(new Map([[1, 2]]), { contentType: "json" }));
    await t("send bigint", () => Q.send(1n));

    // Consumer probes (their deliveries are the second transcript).
    const C = env.PROBE;
    await C.send({ label: "json", v: { a: [1, "b"] } });
    await C.send("plain text", { contentType: "text" });
    await C.send(new Uint8Array([7, 8, 9]), { contentType: "bytes" });
    await C.send(new Map([["k", new Date(42)]]), { contentType: "v8" });
    await C.sendBatch([{ body: { label: "retry-once" } }, { body: { label: "dlq" } },
                       { body: { label: "throw" } }]);
    // ackAll / retryAll on a queue of their own (whatever the batching, two deliveries each).
    await env.PROBE2.sendBatch([{ body: { label: "all-1" } }, { body: { label: "all-2" } }]);
    return Response.json(out);
  },

  async queue(batch, env) {
    if (batch.queue === "out") return;  // acked: the producer transcript's messages
    const seen = [];
    for (const m of batch.messages) {
      const b = m.body;
      const type = Object.prototype.toString.call(b);
      let label;
      let repr;
      if (typeof b === "string") { label = "text"; repr = b; }
      else if (b instanceof ArrayBuffer || ArrayBuffer.isView(b)) {
        label = "bytes"; repr = Array.from(new Uint8Array(b.buffer || b));
      } else if (b instanceof Map) {
        label = "v8"; repr = [...b].map(([k, v]) => [k, Object.prototype.toString.call(v),
                                                       v instanceof Date ? v.getTime() : v]);
      } else { label = b.label; repr = b; }
      seen.push({ queue: batch.queue, label, attempts: m.attempts, type, repr,
                  id: typeof m.id, ts: m.timestamp instanceof Date });
    }
    await fetch(env.SINK, { method: "POST", body: JSON.stringify(seen) });
    if (batch.queue === "probe2") {
      if (batch.messages[0].attempts === 1) batch.retryAll();
      else batch.ackAll();
      return;
    }
    let toThrow = false;
    for (const m of batch.messages) {
      const label = m.body && m.body.label;
      if (batch.queue === "probe" && label === "retry-once" && m.attempts === 1) m.retry();
      else if (batch.queue === "probe" && label === "dlq") m.retry();
      else if (batch.queue === "probe" && label === "throw" && m.attempts === 1) toThrow = true;
      else m.ack();
    }
    if (toThrow) throw new Error("a probe throws once");
  },
};
