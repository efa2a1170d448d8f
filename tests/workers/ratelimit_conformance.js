// The rate limiting binding's conformance transcript, run by WDL and by Miniflare
// (tests/miniflare/ratelimit_reference.mjs) with RL = {limit: 3, period: 60}; the
// transcripts must be equal. Started well inside a 60 s window by the test. Miniflare
// lets a non-finite per-call limit through; WDL refuses it (docs/compatibility.md):
// not in the transcript.
async function call(env, options) {
  try {
    const out = await env.RL.limit(options);
    return { ok: out, keys: Object.keys(out) };
  } catch (e) {
    return { error: e.constructor.name, message: e.message };
  }
}

export default {
  async fetch(request, env) {
    const steps = [];
    const run = async (label, options, times = 1) => {
      for (let i = 0; i < times; i++) steps.push([label, await call(env, options)]);
    };
    await run("no options", undefined);
    await run("null", null);
    await run("a string", "key");
    await run("a number key", { key: 42 });
    await run("unknown options", { key: "k", nope: 1, also: 2 });
    await run("string limit", { key: "k", limit: "3" });
    await run("string period", { key: "k", period: "60" });
    await run("period 30", { key: "k", period: 30 });
    await run("key a", { key: "a" }, 5);
    await run("default key", {}, 4);
    await run("empty key", { key: "" });
    await run("limit override 1", { key: "b", limit: 1 }, 2);
    await run("limit 2.5", { key: "d", limit: 2.5 }, 4);
    await run("limit 0", { key: "e", limit: 0 });
    await run("limit -1", { key: "f", limit: -1 });
    await run("period 10", { key: "g", period: 10 });
    await run("unicode key", { key: "ключ 🔑" }, 4);
    steps.push(["type", Object.prototype.toString.call(env.RL), typeof env.RL.limit]);
    return Response.json(steps);
  },
};
