// One D1 conformance run: the same module runs under Miniflare (the reference,
// tests/miniflare/d1_reference.mjs) and on WDL (tests/integration/d1_rig.py and
// the platform). GET / runs every call against env.DB (a fresh, empty database)
// and answers a transcript of {name, ok, value | error{name, message}}. Values are
// normalised so both sides compare as plain JSON (binary as tagged byte lists);
// meta fields that depend on timing or the storage engine are reduced to their
// type here and compared by the test.

function norm(value) {
  if (value === undefined) return { undefined: true };
  if (typeof value === "bigint") return { bigint: String(value) };
  if (value === null || typeof value !== "object") return value;
  if (value instanceof ArrayBuffer) return { arrayBuffer: [...new Uint8Array(value)] };
  if (ArrayBuffer.isView(value)) return { view: [...new Uint8Array(value.buffer, value.byteOffset, value.byteLength)] };
  if (Array.isArray(value)) return value.map(norm);
  const out = {};
  for (const k of Object.keys(value)) out[k] = norm(value[k]);
  return out;
}

// duration, size_after, served_by and the rows_* counters depend on the engine
// (docs/compatibility.md, ## D1): kept as their type; the rest as they are.
const ENGINE_META = new Set(["duration", "size_after", "served_by", "rows_read", "rows_written",
                             "timings", "total_attempts"]);
function result(r) {
  if (r === null || typeof r !== "object" || !("meta" in r)) return norm(r);
  const meta = {};
  for (const k of Object.keys(r.meta).sort()) {
    meta[k] = ENGINE_META.has(k) ? typeof r.meta[k] : norm(r.meta[k]);
  }
  const out = { keys: Object.keys(r).sort(), success: r.success, meta };
  if ("results" in r) out.results = norm(r.results);
  return out;
}

async function run(DB) {
  const out = [];
  async function step(name, fn, shape = result) {
    try {
      out.push({ name, ok: true, value: shape(await fn()) });
    } catch (e) {
      out.push({ name, ok: false, error: { name: e?.name, message: String(e?.message ?? e) } });
    }
  }
  const batchShape = (rs) => rs.map(result);

  await step("exec create", () => DB.exec(
    "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, data BLOB, flag INTEGER);\n" +
    "CREATE UNIQUE INDEX t_name ON t (name);"), (r) => ({ count: r.count, duration: typeof r.duration }));
  await step("run insert", () => DB.prepare("INSERT INTO t (name, score) VALUES (?, ?)").bind("a", 1.5).run());
  await step("run insert numbered", () => DB.prepare("INSERT INTO t (name, score) VALUES (?2, ?1)").bind(2, "b").run());
  await step("insert blob", () => DB.prepare("INSERT INTO t (name, data) VALUES (?, ?)")
    .bind("blob", new Uint8Array([1, 2, 255]).buffer).run());
  await step("insert view", () => DB.prepare("INSERT INTO t (name, data) VALUES (?, ?)")
    .bind("view", new Uint8Array([9, 8, 7])).run());
  await step("insert boolean", () => DB.prepare("INSERT INTO t (name, flag) VALUES (?, ?)")
    .bind("bool", true).run());
  await step("insert null", () => DB.prepare("INSERT INTO t (name, score) VALUES (?, ?)")
    .bind("nul", null).run());
  await step("bind undefined", () => DB.prepare("SELECT ?").bind(undefined).all());
  await step("bind object", () => DB.prepare("SELECT ?").bind({ a: 1 }).all());
  await step("all", () => DB.prepare("SELECT id, name, score, data, flag FROM t ORDER BY id").all());
  await step("first row", () => DB.prepare("SELECT name, score FROM t WHERE name = ?").bind("a").first());
  await step("first column", () => DB.prepare("SELECT name, score FROM t WHERE name = ?").bind("b").first("score"));
  await step("first missing column", () => DB.prepare("SELECT name FROM t WHERE name = ?").bind("a").first("nope"));
  await step("first no row", () => DB.prepare("SELECT name FROM t WHERE name = ?").bind("zzz").first());
  await step("raw", () => DB.prepare("SELECT id, name FROM t WHERE id <= 2 ORDER BY id").raw());
  await step("raw columnNames", () => DB.prepare("SELECT id, name FROM t WHERE id <= 2 ORDER BY id").raw({ columnNames: true }));
  await step("raw empty", () => DB.prepare("SELECT id FROM t WHERE id < 0").raw({ columnNames: true }));
  await step("blob back", () => DB.prepare("SELECT data FROM t WHERE name = ?").bind("blob").first("data"));
  await step("types", () => DB.prepare("SELECT 1 AS i, 2.5 AS f, 'x' AS s, NULL AS n, x'00ff' AS b, 9007199254740993 AS big").first());
  await step("update changes", () => DB.prepare("UPDATE t SET score = score + 1 WHERE score IS NOT NULL").run());
  await step("delete none", () => DB.prepare("DELETE FROM t WHERE id < 0").run());
  await step("batch ok", () => DB.batch([
    DB.prepare("INSERT INTO t (name) VALUES (?)").bind("c"),
    DB.prepare("INSERT INTO t (name) VALUES (?)").bind("d"),
    DB.prepare("SELECT count(*) AS n FROM t"),
  ]), batchShape);
  await step("batch atomic (unique)", () => DB.batch([
    DB.prepare("INSERT INTO t (name) VALUES (?)").bind("e"),
    DB.prepare("INSERT INTO t (name) VALUES (?)").bind("a"),
  ]), batchShape);
  await step("after failed batch", () => DB.prepare("SELECT count(*) AS n, sum(name = 'e') AS e FROM t").first());
  await step("batch empty", () => DB.batch([]), batchShape);
  await step("syntax error", () => DB.prepare("SELEC 1").all());
  await step("no such table", () => DB.prepare("SELECT * FROM missing").all());
  await step("not null", () => DB.prepare("INSERT INTO t (name) VALUES (NULL)").run());
  await step("two statements", () => DB.prepare("SELECT 1; SELECT 2").all());
  await step("empty sql", () => DB.prepare("").all());
  await step("comment only", () => DB.prepare("-- nothing").run());
  await step("exec error line", () => DB.exec("INSERT INTO t (name) VALUES ('x1');\nINSERT INTO nope VALUES (1);"),
    (r) => ({ count: r.count }));
  await step("exec atomic", () => DB.prepare("SELECT count(*) AS n FROM t WHERE name = 'x1'").first("n"));
  await step("too few params", () => DB.prepare("SELECT ?, ?").bind(1).all());
  await step("last_row_id", () => DB.prepare("INSERT INTO t (name) VALUES ('last')").run(),
    (r) => ({ changes: r.meta.changes, last_row_id: typeof r.meta.last_row_id, changed_db: r.meta.changed_db }));
  await step("count rows", () => DB.prepare("SELECT count(*) AS n FROM t").first("n"));
  // Transactions are the platform's (batch): SQL BEGIN/COMMIT/SAVEPOINT are refused, and a
  // COMMIT inside a batch cannot end its transaction early.
  await step("sql begin", () => DB.prepare("BEGIN TRANSACTION").run());
  await step("sql savepoint", () => DB.prepare("SAVEPOINT s1").run());
  await step("batch commit midway", () => DB.batch([
    DB.prepare("INSERT INTO t (name) VALUES ('midway')"), DB.prepare("COMMIT"),
    DB.prepare("INSERT INTO t (name) VALUES ('after')")]));
  await step("batch commit midway atomic", () =>
    DB.prepare("SELECT count(*) AS n FROM t WHERE name IN ('midway', 'after')").first("n"));
  await step("exec commit", () => DB.exec("COMMIT"), (r) => ({ count: r.count }));
  await step("session", async () => {
    const session = DB.withSession("first-primary");
    const r = await session.prepare("SELECT count(*) AS n FROM t").first("n");
    return { n: r, bookmark: typeof session.getBookmark() };
  });
  return out;
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/sql") {
      // One statement for other tests (isolation, the platform e2e): ?q=SQL&p=JSON params.
      const params = JSON.parse(url.searchParams.get("p") || "[]");
      try {
        return Response.json(await env.DB.prepare(url.searchParams.get("q")).bind(...params).all());
      } catch (e) {
        return Response.json({ error: String(e.message) }, { status: 500 });
      }
    }
    return Response.json(await run(env.DB));
  },
};
