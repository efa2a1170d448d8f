// One Workers KV conformance run: the same module runs under Miniflare (the
// reference, tests/miniflare/kv_reference.mjs) and on WDL (tests/integration/kv_rig.py).
// GET / runs every call against env.KV and answers a transcript of
// {name, ok, value | error{name, message}}. Values are normalised here so both
// sides compare as plain JSON: binary as byte lists, Maps as entry lists, and
// expirations (which depend on the clock) as their distance from now.

const enc = new TextEncoder();

function norm(value) {
  if (value === undefined) return { undefined: true };
  if (value === null || typeof value !== "object") return value;
  if (value instanceof ArrayBuffer) return { arrayBuffer: [...new Uint8Array(value)] };
  if (ArrayBuffer.isView(value)) return { view: [...new Uint8Array(value.buffer, value.byteOffset, value.byteLength)] };
  if (value instanceof Map) return { map: [...value.entries()].map(([k, v]) => [k, norm(v)]) };
  if (Array.isArray(value)) return value.map(norm);
  const out = {};
  for (const k of Object.keys(value)) out[k] = norm(value[k]);
  return out;
}

// An expiration as "about now + N s": rounded to the minute so the two runs agree.
function ttlShape(expiration, now) {
  if (typeof expiration !== "number") return { expiration };
  return { ttlMinutes: Math.round((expiration - now) / 60) };
}

function listShape(result, now) {
  return {
    keys: result.keys.map((k) => {
      const out = { name: k.name };
      if ("expiration" in k) out.expiration = ttlShape(k.expiration, now);
      if ("metadata" in k) out.metadata = norm(k.metadata);
      return out;
    }),
    fields: Object.keys(result).sort(),
    cacheStatus: result.cacheStatus,
    list_complete: result.list_complete,
    hasCursor: typeof result.cursor === "string" && result.cursor.length > 0,
    cursorKey: "cursor" in result,
  };
}

function streamOf(chunks) {
  return new ReadableStream({
    start(controller) {
      for (const c of chunks) controller.enqueue(enc.encode(c));
      controller.close();
    },
  });
}

async function run(KV) {
  const transcript = [];
  const now = () => Math.floor(Date.now() / 1000);
  async function step(name, fn) {
    try {
      transcript.push({ name, ok: true, value: norm(await fn()) });
    } catch (e) {
      // Messages may quote a timestamp taken from the clock: mask it.
      const message = e && typeof e.message === "string" ? e.message.replace(/\b1\d{9}\b/g, "<ts>") : e;
      transcript.push({ name, ok: false, error: { name: e && e.name, message } });
    }
  }

  // --- types
  await step("put text", () => KV.put("a", "alpha"));
  await step("get default", () => KV.get("a"));
  await step("get text", () => KV.get("a", "text"));
  await step("get {type:text}", () => KV.get("a", { type: "text" }));
  await step("get missing", () => KV.get("nope"));
  await step("get missing arrayBuffer", () => KV.get("nope", "arrayBuffer"));
  await step("put json text", () => KV.put("j", JSON.stringify({ x: 1, y: [true, null, "é"] })));
  await step("get json", () => KV.get("j", "json"));
  await step("get {type:json}", () => KV.get("j", { type: "json" }));
  await step("get json of non-json", () => KV.get("a", "json"));
  await step("get arrayBuffer", () => KV.get("a", "arrayBuffer"));
  await step("get stream", async () => {
    const s = await KV.get("a", "stream");
    return { isStream: s instanceof ReadableStream, text: await new Response(s).text() };
  });
  await step("get missing stream", () => KV.get("nope", "stream"));
  await step("get bad type", () => KV.get("a", "blob"));
  await step("get missing bad type", () => KV.get("nope", "blob"));
  await step("get bad type in options", () => KV.get("a", { type: "xml" }));
  await step("put Uint8Array", () => KV.put("bin", new Uint8Array([0, 1, 2, 254, 255])));
  await step("get binary arrayBuffer", () => KV.get("bin", "arrayBuffer"));
  await step("put ArrayBuffer", () => KV.put("buf", new Uint8Array([9, 8, 7]).buffer));
  await step("get ArrayBuffer value", () => KV.get("buf", "arrayBuffer"));
  await step("put DataView", () => KV.put("view", new DataView(new Uint8Array([5, 6, 7, 8]).buffer, 1, 2)));
  await step("get DataView value", () => KV.get("view", "arrayBuffer"));
  await step("put ReadableStream", () => KV.put("stream", streamOf(["hel", "lo ", "wörld"])));
  await step("get streamed value", () => KV.get("stream"));
  await step("put empty string", () => KV.put("empty", ""));
  await step("get empty string", () => KV.get("empty"));
  await step("get empty arrayBuffer", () => KV.get("empty", "arrayBuffer"));
  await step("put number value", () => KV.put("num", 42));
  await step("get number value", () => KV.get("num"));
  await step("put object value", () => KV.put("obj", { a: 1 }));
  await step("put null value", () => KV.put("nul", null));
  await step("get null value", () => KV.get("nul"));
  await step("put undefined value", () => KV.put("undef", undefined));
  await step("get undefined value", () => KV.get("undef"));
  await step("get numeric key", async () => { await KV.put("123", "n"); return KV.get(123); });

  // --- metadata
  await step("put with metadata", () => KV.put("meta", "mv", { metadata: { a: 1, b: "two", c: [null] } }));
  await step("getWithMetadata", () => KV.getWithMetadata("meta"));
  await step("getWithMetadata arrayBuffer", () => KV.getWithMetadata("meta", "arrayBuffer"));
  await step("getWithMetadata {type}", () => KV.getWithMetadata("meta", { type: "text" }));
  await step("getWithMetadata no metadata", () => KV.getWithMetadata("a"));
  await step("getWithMetadata missing", () => KV.getWithMetadata("nope"));
  await step("put metadata string", () => KV.put("meta-s", "v", { metadata: "just a string" }));
  await step("getWithMetadata string metadata", () => KV.getWithMetadata("meta-s"));
  await step("put metadata too large", () => KV.put("big-meta", "v", { metadata: { x: "y".repeat(1100) } }));
  await step("overwrite drops metadata", async () => {
    await KV.put("meta2", "one", { metadata: { v: 1 } });
    await KV.put("meta2", "two");
    return KV.getWithMetadata("meta2");
  });

  // --- expiry
  await step("put expirationTtl", () => KV.put("ttl", "t", { expirationTtl: 120 }));
  await step("get expiring", () => KV.get("ttl"));
  await step("put expiration", () => KV.put("exp", "e", { expiration: now() + 3600 }));
  await step("list expiring", async () => listShape(await KV.list({ prefix: "ttl" }), now()));
  await step("list expiration", async () => listShape(await KV.list({ prefix: "exp" }), now()));
  await step("put expirationTtl 30", () => KV.put("ttl30", "x", { expirationTtl: 30 }));
  await step("put expirationTtl 0", () => KV.put("ttl0", "x", { expirationTtl: 0 }));
  await step("put expirationTtl -5", () => KV.put("ttlneg", "x", { expirationTtl: -5 }));
  await step("put expirationTtl string", () => KV.put("ttls", "x", { expirationTtl: "100" }));
  await step("put expiration in past", () => KV.put("past", "x", { expiration: 1000 }));
  await step("put expiration now+30", () => KV.put("soon", "x", { expiration: now() + 30 }));
  await step("put expiration float", () => KV.put("expf", "x", { expiration: now() + 600.5 }));
  await step("list expiration float", async () => listShape(await KV.list({ prefix: "expf" }), now()));
  await step("put metadata null", () => KV.put("mnull", "x", { metadata: null }));
  await step("getWithMetadata metadata null", () => KV.getWithMetadata("mnull"));
  await step("list metadata null", async () => listShape(await KV.list({ prefix: "mnull" }), now()));

  // --- cacheTtl (accepted, no effect on a single-region platform)
  await step("get cacheTtl 60", () => KV.get("a", { cacheTtl: 60 }));
  await step("get cacheTtl 10", () => KV.get("a", { cacheTtl: 10 }));

  // --- key rules
  await step("put empty key", () => KV.put("", "x"));
  await step("put dot key", () => KV.put(".", "x"));
  await step("put dotdot key", () => KV.put("..", "x"));
  await step("get dot key", () => KV.get("."));
  await step("delete dotdot key", () => KV.delete(".."));
  await step("put 512-byte key", () => KV.put("k".repeat(510) + "é", "x"));
  await step("put 513-byte key", () => KV.put("k".repeat(513), "x"));
  await step("get 513-byte key", () => KV.get("k".repeat(513)));
  await step("put slashes and dots key", async () => {
    await KV.put("a/../b/./c%2F?#", "odd");
    return KV.get("a/../b/./c%2F?#");
  });
  await step("put value too large", () => KV.put("huge", "x".repeat(25 * 1024 * 1024 + 1)));

  // --- list
  await step("put list keys", async () => {
    for (const k of ["p/b", "p/a", "p/c", "p/é", "p/z", "p/Z", "p/\u{1F600}", "p/\uFFFD", "q"]) {
      await KV.put(k, k, k === "p/c" ? { metadata: { tag: k } } : undefined);
    }
  });
  await step("list prefix", async () => listShape(await KV.list({ prefix: "p/" }), now()));
  await step("list all", async () => listShape(await KV.list(), now()));
  const page1 = await KV.list({ prefix: "p/", limit: 3 }).catch(() => null);
  await step("list limit 3", async () => listShape(page1, now()));
  const page2 = page1 && await KV.list({ prefix: "p/", limit: 3, cursor: page1.cursor }).catch(() => null);
  await step("list page 2", async () => listShape(page2, now()));
  await step("list page 3", async () => listShape(await KV.list({ prefix: "p/", limit: 3, cursor: page2.cursor }), now()));
  await step("list limit 0", async () => listShape(await KV.list({ limit: 0, prefix: "p/" }), now()));
  await step("list limit 1001", () => KV.list({ limit: 1001 }));
  await step("list limit 1000", async () => (await KV.list({ limit: 1000, prefix: "q" })).keys.length);
  await step("list no match", async () => listShape(await KV.list({ prefix: "zzz" }), now()));
  await step("list prefix too long", () => KV.list({ prefix: "p".repeat(513) }));

  // --- bulk get
  await step("bulk get", () => KV.get(["a", "j", "nope"]));
  await step("bulk get json", () => KV.get(["j"], "json"));
  await step("bulk get json non-json", () => KV.get(["j", "a"], { type: "json" }));
  await step("bulk get arrayBuffer", () => KV.get(["a"], "arrayBuffer"));
  await step("bulk get 101 keys", () => KV.get(Array.from({ length: 101 }, (_, i) => `k${i}`)));
  await step("bulk get 100 keys", async () => (await KV.get(Array.from({ length: 100 }, (_, i) => `k${i}`))).size);
  await step("bulk get empty", () => KV.get([]));
  await step("bulk get with empty key", () => KV.get(["a", ""]));
  await step("bulk get with dot key", () => KV.get(["."]));
  await step("bulk getWithMetadata", () => KV.getWithMetadata(["meta", "a", "nope"]));
  await step("bulk getWithMetadata empty value", () => KV.getWithMetadata(["empty", "meta"]));
  await step("bulk getWithMetadata json", () => KV.getWithMetadata(["j"], "json"));

  // --- delete
  await step("delete", () => KV.delete("a"));
  await step("get deleted", () => KV.get("a"));
  await step("delete missing", () => KV.delete("never-was"));
  await step("delete empty key", () => KV.delete(""));
  await step("list after delete", async () => listShape(await KV.list({ prefix: "a" }), now()));

  return transcript;
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const KV = env.KV;
    if (url.pathname === "/put") {
      await KV.put(url.searchParams.get("key"), request.body ?? "", {
        metadata: url.searchParams.has("metadata") ? JSON.parse(url.searchParams.get("metadata")) : undefined,
      });
      return new Response(null, { status: 204 });
    }
    if (url.pathname === "/stream") {
      const s = await KV.get(url.searchParams.get("key"), "stream");
      return new Response(s, { status: s === null ? 404 : 200 });
    }
    if (url.pathname === "/error") {
      try {
        await KV.get("anything");
        return Response.json({ ok: true });
      } catch (e) {
        return Response.json({ name: e.name, message: e.message });
      }
    }
    if (url.pathname === "/bench") {
      // Reported by a test, never asserted: n sequential reads of one warm key.
      const n = Number(url.searchParams.get("n") || "200");
      await KV.put("bench", "warm value");
      await KV.get("bench");
      const times = [];
      const start = performance.now();
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        await KV.get("bench");
        times.push(performance.now() - t0);
      }
      // workerd's clock moves in whole milliseconds (and only across I/O), so the
      // mean over the run is the precise number; p50/p99 are coarse.
      const mean = (performance.now() - start) / n;
      times.sort((a, b) => a - b);
      return Response.json({ n, mean, p50: times[n >> 1], p99: times[Math.floor(n * 0.99)] });
    }
    if (url.pathname === "/get") {
      // Single reads for the expiry test (its expired key is set up from outside).
      const key = url.searchParams.get("key");
      return Response.json({
        value: await KV.get(key),
        withMetadata: norm(await KV.getWithMetadata(key)),
        list: (await KV.list({ prefix: key })).keys.map((k) => k.name),
      });
    }
    return Response.json(await run(KV));
  },
};
