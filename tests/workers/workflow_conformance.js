// The Workflows conformance worker: the same calls run under Miniflare
// (tests/miniflare/workflow_reference.mjs) and on WDL
// (tests/integration/test_workflow_conformance.py); GET / answers the transcript,
// one entry per call: {name, value} or {name, error: {name, message}}.
import { WorkflowEntrypoint } from "cloudflare:workers";

export class Flow extends WorkflowEntrypoint {
  async run(event, step) {
    const p = event.payload || {};
    const first = await step.do("first", async () => ({ got: p, id: event.instanceId }));
    const nothing = await step.do("nothing", async () => undefined);
    await step.sleep("nap", 50);
    await step.sleepUntil("nap-until", Date.now() + 50);
    if (p.fail) {
      await step.do("boom", { retries: { limit: 1, delay: 10, backoff: "constant" } }, async () => {
        throw new Error("step exploded");
      });
    }
    let caught = null;
    try {
      await step.do("caught", { retries: { limit: 0, delay: 0 } }, async () => {
        throw new TypeError("caught inside run");
      });
    } catch (e) {
      caught = { name: e.name, message: e.message };
    }
    const ev = p.wait ? await step.waitForEvent("go", { type: "go", timeout: "1 minute" }) : null;
    const timedOut = p.shortWait ? await step.waitForEvent("never", { type: "never", timeout: 100 })
      .then(() => "no", (e) => ({ name: e.name, hasMessage: typeof e.message === "string" })) : null;
    return { first, nothing: nothing === undefined ? "undefined" : nothing, caught,
             event: ev && { payload: ev.payload, type: ev.type,
                            timestamp: ev.timestamp instanceof Date },
             timedOut };
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(instance, statuses, ms = 20000) {
  const end = Date.now() + ms;
  for (;;) {
    const s = await instance.status();
    if (statuses.includes(s.status) || Date.now() > end) return s;
    await sleep(50);
  }
}

// Status as compared: Cloudflare's fields only (Miniflare adds a local-dev field).
function shape(s) {
  const out = { status: s.status };
  if ("output" in s && s.output !== undefined) out.output = s.output;
  if (s.error) out.error = { name: s.error.name, message: s.error.message };
  return out;
}

export default {
  async fetch(request, env) {
    const W = env.FLOW;
    const transcript = [];
    const call = async (name, fn) => {
      try {
        const value = await fn();
        transcript.push({ name, value: value === undefined ? "undefined" : value });
      } catch (e) {
        transcript.push({ name, error: { name: e.name, message: e.message } });
      }
    };
    await call("binding keys", () => ["create", "createBatch", "get"].map((k) => typeof W[k]));
    let c1;
    await call("create with id", async () => { c1 = await W.create({ id: "c1", params: { x: 1, wait: true } }); return c1.id; });
    await call("instance methods", () => ["status", "pause", "resume", "terminate", "restart", "sendEvent"].map((k) => typeof c1[k]));
    // Settled by then on both (WDL: waiting, Miniflare: running; docs/compatibility.md).
    await call("waiting for the event", async () => { await sleep(1500); return shape(await c1.status()); });
    await call("create duplicate id", () => W.create({ id: "c1" }).then((i) => i.id));
    await call("create invalid id", () => W.create({ id: "bad id!" }).then((i) => i.id));
    await call("get missing", () => W.get("missing-one").then((i) => i.id));
    await call("get existing", () => W.get("c1").then((i) => i.id));
    await call("sendEvent", () => c1.sendEvent({ type: "go", payload: { ok: true } }));
    await call("complete", async () => shape(await until(c1, ["complete", "errored"])));
    await call("generated id", async () => (await W.create({ params: {} })).id.length);
    await call("errored after retries", async () => {
      const i = await W.create({ id: "c2", params: { fail: true } });
      return shape(await until(i, ["errored", "complete"]));
    });
    await call("waitForEvent timeout", async () => {
      const i = await W.create({ id: "c5", params: { shortWait: true } });
      return shape(await until(i, ["complete", "errored"]));
    });
    let c3;
    await call("pause", async () => {
      c3 = await W.create({ id: "c3", params: { wait: true } });
      await sleep(1500);
      await c3.pause();
      return shape(await until(c3, ["paused"]));
    });
    await call("resume", async () => { await c3.resume(); return shape(await until(c3, ["waiting", "running"])); });
    await call("terminate", async () => { await c3.terminate(); return shape(await until(c3, ["terminated"])); });
    await call("terminate finished", () => c3.terminate());
    await call("restart", async () => { await c3.restart(); await sleep(1500); return shape(await c3.status()); });
    await call("createBatch", async () => (await W.createBatch([{ id: "b1", params: {} }, { id: "b2", params: {} }])).map((i) => i.id));
    await call("batch complete", async () => shape(await until(await W.get("b2"), ["complete", "errored"])));
    return Response.json(transcript);
  },
};
