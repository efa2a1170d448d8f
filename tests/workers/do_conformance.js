// One Durable Objects conformance run: the same module runs under Miniflare (the
// reference, tests/miniflare/do_reference.mjs) and on WDL
// (tests/integration/test_do_binding.py). GET / runs every call against env.OBJ
// (class Conformance) and answers a transcript of {name, ok, value | error{name, message}}.
import { DurableObject } from "cloudflare:workers";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const entries = (m) => [...m.entries()];

export class Conformance extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.booted = 0;
    ctx.blockConcurrencyWhile(async () => {
      await sleep(5);
      this.booted = ((await ctx.storage.get("boots")) || 0) + 1;
      await ctx.storage.put("boots", this.booted);
    });
  }
  whoami() {
    return { id: this.ctx.id.toString(), hasName: typeof this.ctx.id.name };
  }
  booted_() { return this.booted > 0; }
  async putGet(key, value) {
    await this.ctx.storage.put(key, value);
    return await this.ctx.storage.get(key);
  }
  async multi() {
    await this.ctx.storage.put({ "m:a": 1, "m:b": { x: [1, 2] }, "m:c": "three" });
    const got = await this.ctx.storage.get(["m:a", "m:b", "m:zz"]);
    return entries(got);
  }
  async listing() {
    const s = this.ctx.storage;
    await s.put({ "l:1": 1, "l:2": 2, "l:3": 3, "l:4": 4, "k:1": 0 });
    return {
      prefix: entries(await s.list({ prefix: "l:" })),
      range: entries(await s.list({ start: "l:2", end: "l:4" })),
      limit: entries(await s.list({ prefix: "l:", limit: 2 })),
      reverse: entries(await s.list({ prefix: "l:", reverse: true, limit: 3 })),
    };
  }
  async deletes() {
    const s = this.ctx.storage;
    await s.put({ "d:1": 1, "d:2": 2, "d:3": 3 });
    return { one: await s.delete("d:1"), missing: await s.delete("d:nope"),
             many: await s.delete(["d:2", "d:3", "d:4"]) };
  }
  async txn() {
    const s = this.ctx.storage;
    await s.transaction(async (t) => { await t.put("t:ok", 1); });
    try {
      await s.transaction(async (t) => { await t.put("t:no", 1); throw new Error("abort me"); });
    } catch (e) { void e; }
    const rolled = await s.transaction(async (t) => { await t.put("t:rb", 1); t.rollback(); return 7; });
    return { ok: await s.get("t:ok"), no: await s.get("t:no") ?? null,
             rb: await s.get("t:rb") ?? null, rolled };
  }
  async wipe() {
    await this.ctx.storage.put("w:1", 1);
    await this.ctx.storage.deleteAll();
    return entries(await this.ctx.storage.list());
  }
  sql() {
    const sql = this.ctx.storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT, n REAL)");
    const ins = sql.exec("INSERT INTO items (name, n) VALUES (?, ?), (?, ?)", "a", 1.5, "b", 2);
    const cursor = sql.exec("SELECT id, name, n FROM items ORDER BY id");
    const rows = cursor.toArray();
    const raw = [...sql.exec("SELECT name FROM items ORDER BY id").raw()];
    const one = sql.exec("SELECT count(*) AS c FROM items").one();
    return { written: ins.rowsWritten, rows, columns: cursor.columnNames, raw, one,
             read: cursor.rowsRead };
  }
  sqlIter() {
    const out = [];
    for (const row of this.ctx.storage.sql.exec("SELECT name FROM items ORDER BY id DESC")) {
      out.push(row.name);
    }
    return out;
  }
  sqlError() {
    this.ctx.storage.sql.exec("SELECT * FROM no_such_table");
  }
  boom() {
    throw new RangeError("object said no");
  }
  echo(v) { return v; }
  shape(v) { return describe(v); }
  spread(...args) { return describe(args); }
  unclonable(kind) {
    if (kind === "symbol") return Symbol("inside");
    return new (class Inner {})();
  }
  async incr() {
    const n = ((await this.ctx.storage.get("count")) || 0) + 1;
    await this.ctx.storage.put("count", n);
    return n;
  }
  async count() { return (await this.ctx.storage.get("count")) || 0; }
  async arm(ms) {
    await this.ctx.storage.setAlarm(Date.now() + ms);
    return (await this.ctx.storage.getAlarm()) !== null;
  }
  async disarm() {
    await this.ctx.storage.setAlarm(Date.now() + 60000);
    await this.ctx.storage.deleteAlarm();
    return await this.ctx.storage.getAlarm();
  }
  async alarmState() {
    return { fired: (await this.ctx.storage.get("alarms")) || 0,
             pending: (await this.ctx.storage.getAlarm()) !== null };
  }
  async alarm() {
    await this.ctx.storage.put("alarms", ((await this.ctx.storage.get("alarms")) || 0) + 1);
  }
  later() {
    this.ctx.waitUntil(this.ctx.storage.put("later", "done"));
    return "queued";
  }
  async getLater() { await sleep(50); return await this.ctx.storage.get("later"); }
  webSocketMessage(ws, message) {
    ws.send(`echo ${message} (${this.ctx.getWebSockets().length} open)`);
  }
  async fetch(request) {
    if (request.headers.get("upgrade") === "websocket") {
      const [client, server] = Object.values(new WebSocketPair());
      this.ctx.acceptWebSocket(server);
      return new Response(null, { status: 101, webSocket: client });
    }
    const url = new URL(request.url);
    const body = request.method === "POST" ? await request.text() : "";
    return new Response(`obj ${request.method} ${url.pathname} ${body}`,
                        { status: 201, headers: { "x-obj": "yes" } });
  }
}

// A value as text that says its types, so the transcripts (JSON) can compare what
// structured clone keeps: a repeated object prints as <ref N>, N its first sight's number.
function describe(v, seen = new Map()) {
  if (v === undefined) return "undefined";
  if (v === null) return "null";
  if (typeof v === "number") return Object.is(v, -0) ? "number:-0" : `number:${v}`;
  if (typeof v !== "object") return `${typeof v}:${String(v)}`;
  if (seen.has(v)) return `<ref ${seen.get(v)}>`;
  seen.set(v, seen.size);
  const kind = Object.prototype.toString.call(v).slice(8, -1);
  const bytes = (b) => [...b].join(" ");
  if (v instanceof Date) return `Date:${v.getTime()}`;
  if (v instanceof RegExp) return `RegExp:${v.source}/${v.flags}`;
  if (v instanceof Error) return `${v.constructor.name}:${v.name}:${v.message}`;
  if (v instanceof ArrayBuffer) return `ArrayBuffer:${bytes(new Uint8Array(v))}`;
  if (ArrayBuffer.isView(v)) {
    return `${kind}:${bytes(new Uint8Array(v.buffer, v.byteOffset, v.byteLength))}`;
  }
  if (v instanceof Map) {
    return `Map{${[...v].map(([k, x]) => `${describe(k, seen)}=>${describe(x, seen)}`)}}`;
  }
  if (v instanceof Set) return `Set{${[...v].map((x) => describe(x, seen))}}`;
  if (Array.isArray(v)) {
    return `[${Array.from(v, (x, i) => (i in v ? describe(x, seen) : "<hole>"))}]`;
  }
  if (kind !== "Object") return `${kind}(${describe(v.valueOf(), new Map())})`;
  return `{${Object.keys(v).map((k) => `${k}:${describe(v[k], seen)}`)}}`;
}

function structuredValues() {
  const cycle = { a: 1 };
  cycle.self = cycle;
  const shared = { s: 1 };
  const renamed = new Error("c");
  renamed.name = "MyError";
  return {
    date: new Date(1700000000123), invalidDate: new Date(NaN),
    map: new Map([["a", 1], [2, { b: 3 }]]), set: new Set([1, "two"]),
    u8: new Uint8Array([1, 2, 255]), i16: new Int16Array([-1, 300]),
    f64: new Float64Array([1.5]), big64: new BigInt64Array([-5n]),
    subarray: new Uint8Array([9, 8, 7, 6]).subarray(1, 3),
    dataView: new DataView(new Uint8Array([5, 6]).buffer), buffer: new Uint8Array([4, 5]).buffer,
    bigint: 12345678901234567890n, undef: undefined, undefInObject: { a: undefined, b: 1 },
    undefInArray: [1, undefined, 3], holes: [1, , 3], nan: NaN, negZero: -0, inf: -Infinity,
    regexp: /ab+c/gi, rangeError: new RangeError("nope"), renamedError: renamed,
    nested: { m: new Map([["d", new Date(5)]]), l: [new Set([1n])] },
    tagLookalike: { $wdl: "date", v: 1 }, boxed: new String("boxed"), unicode: "h\u00e9llo \u2713",
    cycle, sharedTwice: [shared, shared],
  };
}

async function run(OBJ) {
  const transcript = [];
  async function step(name, fn) {
    try {
      const value = await fn();
      transcript.push({ name, ok: true, value: value === undefined ? { undefined: true } : value });
    } catch (e) {
      transcript.push({ name, ok: false, error: { name: e.name, message: e.message } });
    }
  }
  const a = OBJ.idFromName("alpha");
  await step("idFromName stable", () => a.toString() === OBJ.idFromName("alpha").toString());
  await step("idFromName shape", () => /^[0-9a-f]{64}$/.test(a.toString()));
  await step("idFromName name", () => a.name);
  await step("idFromName differs", () => a.toString() !== OBJ.idFromName("beta").toString());
  const u = OBJ.newUniqueId();
  await step("newUniqueId shape", () => [/^[0-9a-f]{64}$/.test(u.toString()), u.name ?? null,
                                        u.toString() !== OBJ.newUniqueId().toString()]);
  await step("idFromString roundtrip", () => OBJ.idFromString(a.toString()).equals(a));
  await step("idFromString malformed", () => OBJ.idFromString("not-an-id").toString());
  await step("idFromString foreign", () => OBJ.idFromString("ab".repeat(32)).toString());
  await step("getByName same object", async () =>
    (await OBJ.getByName("alpha").whoami()).id === a.toString());
  const stub = OBJ.get(a);
  await step("ctx.id inside", async () => (await stub.whoami()).id === a.toString());
  await step("blockConcurrencyWhile in constructor", () => stub.booted_());
  await step("put/get", () => stub.putGet("k", { nested: [1, "two", null], n: 3.5 }));
  await step("put/get multiple", () => stub.multi());
  await step("list options", () => stub.listing());
  await step("delete", () => stub.deletes());
  await step("transaction", () => stub.txn());
  await step("deleteAll", () => stub.wipe());
  await step("sql exec", () => stub.sql());
  await step("sql cursor iteration", () => stub.sqlIter());
  await step("sql error", () => stub.sqlError());
  await step("rpc throws", () => stub.boom());
  await step("rpc structured values", async () => {
    const out = {};
    for (const [k, v] of Object.entries(structuredValues())) {
      out[k] = { back: describe(await stub.echo(v)), inside: await stub.shape(v) };
    }
    return out;
  });
  await step("rpc many arguments", () => stub.spread(new Map([[1, 2]]), undefined, 3n));
  await step("rpc class instance argument", () => stub.echo(new (class Point {})()));
  await step("rpc null-prototype argument", () => stub.echo(Object.create(null)));
  await step("rpc symbol argument", () => stub.echo(Symbol("s")));
  await step("rpc class instance result", () => stub.unclonable("class"));
  await step("rpc symbol result", () => stub.unclonable("symbol"));
  await step("fetch", async () => {
    const r = await stub.fetch("https://do.example/path?q=1", { method: "POST", body: "hi" });
    return [r.status, r.headers.get("x-obj"), await r.text()];
  });
  await step("websocket (hibernation API)", async () => {
    const r = await stub.fetch("https://do.example/ws", { headers: { upgrade: "websocket" } });
    const ws = r.webSocket;
    ws.accept();
    const got = new Promise((resolve) => ws.addEventListener("message", (e) => resolve(e.data)));
    ws.send("hi");
    const answer = await got;
    ws.close(1000, "done");
    return [r.status, answer];
  });
  await step("concurrent calls", async () => {
    const c = OBJ.get(OBJ.idFromName("counter"));
    const got = await Promise.all(Array.from({ length: 20 }, () => c.incr()));
    return [got.sort((x, y) => x - y).join(","), await c.count()];
  });
  await step("objects are separate", async () => [
    await OBJ.get(OBJ.idFromName("counter")).count(),
    await OBJ.get(OBJ.idFromName("other")).count()]);
  await step("waitUntil", async () => [await stub.later(), await stub.getLater()]);
  await step("deleteAlarm", () => stub.disarm());
  const alarmed = OBJ.get(OBJ.idFromName("alarmed"));
  await step("setAlarm", () => alarmed.arm(200));
  await step("alarm fires once", async () => {
    for (let i = 0; i < 100; i++) {
      const s = await alarmed.alarmState();
      if (s.fired > 0 && !s.pending) return s;
      await sleep(100);
    }
    return await alarmed.alarmState();
  });
  return transcript;
}

export default {
  async fetch(request, env) {
    return Response.json(await run(env.OBJ));
  },
};
