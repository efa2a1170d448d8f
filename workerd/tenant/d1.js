// The D1 API for tenant code (D1Database), over the platform's WdlD1 stub.
//
// Delivered to the tenant isolate as `__wdl/d1.js`; the shim replaces each raw D1
// stub in env with `wrap(stub, name)`. Behaviour follows workerd's own D1
// binding as Miniflare runs it (the reference): values are checked and
// converted here (blobs travel as byte lists, booleans as 1/0), a failed
// statement throws `D1_ERROR: <SQLite's message>`, and a batch commits all or
// nothing (the D1 service runs it as one transaction). Self-contained: no imports.

function d1Error(prefix, message) {
  return new Error(`${prefix}: ${message}`, { cause: new Error(message) });
}

function bindValue(value) {
  if (typeof value === "number" || typeof value === "string") return value;
  if (typeof value === "boolean") return value ? 1 : 0;
  if (value === null) return null;
  if (typeof value === "object") {
    if (Array.isArray(value) && value.every((b) => typeof b === "number" && b >= 0 && b < 256)) return value;
    if (value instanceof ArrayBuffer) return Array.from(new Uint8Array(value));
    if (ArrayBuffer.isView(value)) return Array.from(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
  }
  throw d1Error("D1_TYPE_ERROR", `Type '${typeof value}' not supported for value '${value}'`);
}

function first(answer) {
  return Array.isArray(answer) ? answer[0] : answer;
}

function shaped(r) {
  // The D1 wire format answers success/meta always, results when there are any.
  if (r && r.error) return { success: false, meta: r.meta || {}, error: r.error };
  const out = { success: true, meta: r?.meta || {} };
  if (r && "results" in r) out.results = r.results;
  return out;
}

function asObjects(r) {
  if (!("results" in r)) return { ...r, results: [] };
  if (Array.isArray(r.results)) return r;
  const { columns, rows } = r.results;
  return { ...r, results: rows.map((row) => Object.fromEntries(row.map((cell, i) => [columns[i], cell]))) };
}

class D1Database {
  #stub;
  #bookmark = null;

  constructor(stub) {
    this.#stub = stub;
  }

  prepare(query) {
    return new D1PreparedStatement(this, String(query), []);
  }

  async batch(statements) {
    const answer = await this._sendOrThrow("query", statements.map((s) => s._statement),
      statements.map((s) => s._params), "ROWS_AND_COLUMNS");
    return (Array.isArray(answer) ? answer : [answer]).map(asObjects);
  }

  async exec(query) {
    const lines = String(query).trim().split("\n");
    const answer = await this._send("execute", lines, [], "NONE");
    const results = Array.isArray(answer) ? answer : [answer];
    const failed = results.findIndex((r) => !r.success);
    if (failed !== -1) {
      const message = `Error in line ${failed + 1}: ${lines[failed]}: ${results[failed].error}`;
      throw d1Error("D1_EXEC_ERROR", message);
    }
    return { count: results.length, duration: results.reduce((t, r) => t + (r.meta.duration ?? 0), 0) };
  }

  withSession(_constraintOrBookmark = "first-unconstrained") {
    // One owner per database serves every query, so any session is already
    // sequentially consistent; the bookmark only has to be an opaque string.
    const db = this;
    return {
      prepare: (query) => db.prepare(query),
      batch: (statements) => db.batch(statements),
      getBookmark: () => db.#bookmark,
    };
  }

  async dump() {
    throw d1Error("D1_DUMP_ERROR", "dump() is deprecated; use `wdl d1 export`");
  }

  async _sendOrThrow(endpoint, query, params, format) {
    const answer = await this._send(endpoint, query, params, format);
    const head = first(answer);
    if (!head.success) throw d1Error("D1_ERROR", head.error);
    return answer;
  }

  async _send(endpoint, query, params, format) {
    const body = JSON.stringify(Array.isArray(query)
      ? query.map((sql, i) => ({ sql, params: params[i] }))
      : { sql: query, params });
    let answer;
    try {
      answer = JSON.parse(await this.#stub.send(endpoint, body, format));
    } catch (e) {
      throw d1Error("D1_ERROR", e?.message || "Something went wrong");
    }
    this.#bookmark = this.#bookmark ?? "00000000-wdl";
    return Array.isArray(answer) ? answer.map(shaped) : shaped(answer);
  }
}

class D1PreparedStatement {
  #db;

  constructor(db, statement, params) {
    this.#db = db;
    this._statement = statement;
    this._params = params;
  }

  bind(...values) {
    return new D1PreparedStatement(this.#db, this._statement, values.map(bindValue));
  }

  async first(column) {
    const r = asObjects(first(await this.#db._sendOrThrow("query", this._statement, this._params,
      "ROWS_AND_COLUMNS")));
    if (r.results.length === 0) return null;
    const row = r.results[0];
    if (column === undefined) return row;
    if (row[column] === undefined) throw d1Error("D1_COLUMN_NOTFOUND", `Column not found (${column})`);
    return row[column];
  }

  async run() {
    return first(await this.#db._sendOrThrow("execute", this._statement, this._params, "NONE"));
  }

  async all() {
    return asObjects(first(await this.#db._sendOrThrow("query", this._statement, this._params,
      "ROWS_AND_COLUMNS")));
  }

  async raw(options) {
    const r = first(await this.#db._sendOrThrow("query", this._statement, this._params,
      "ROWS_AND_COLUMNS"));
    if (!("results" in r)) return [];
    if (Array.isArray(r.results)) {
      const out = [];
      for (const row of r.results) {
        if (options?.columnNames && out.length === 0) out.push(Object.keys(row));
        out.push(Object.values(row));
      }
      return out;
    }
    return [...(options?.columnNames ? [r.results.columns] : []), ...r.results.rows];
  }
}

export function wrap(stub, _name) {
  return new D1Database(stub);
}
