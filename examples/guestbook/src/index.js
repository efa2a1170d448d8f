// POST /<room>  body = text -> kept by the room object; archived to D1 by its alarm
// GET  /<room>              -> {pending, alarmPending, archived: [bodies in D1]}
import { DurableObject } from "cloudflare:workers";

export class Room extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.storage.sql.exec(
      "CREATE TABLE IF NOT EXISTS pending (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)");
  }

  async post(body) {
    this.ctx.storage.sql.exec("INSERT INTO pending (body) VALUES (?)", body);
    if ((await this.ctx.storage.getAlarm()) === null) {
      await this.ctx.storage.setAlarm(Date.now() + 200);
    }
    return this.pending();
  }

  async alarm() {
    const name = await this.ctx.storage.get("name");
    const rows = this.ctx.storage.sql.exec("SELECT seq, body FROM pending ORDER BY seq").toArray();
    if (rows.length === 0) return;
    // Archive first, forget after: an alarm that fails half way is retried, and the
    // D1 batch is atomic, so a retry never archives an entry twice (seq is the key).
    await this.env.DB.batch(rows.map((r) => this.env.DB.prepare(
      "INSERT OR IGNORE INTO entries (id, room, body) VALUES (?, ?, ?)")
      .bind(this.key(name, r.seq), name, r.body)));
    this.ctx.storage.sql.exec("DELETE FROM pending WHERE seq <= ?", rows.at(-1).seq);
  }

  async report() {
    return { pending: this.pending(), alarmPending: (await this.ctx.storage.getAlarm()) !== null };
  }

  async named(name) {
    await this.ctx.storage.put("name", name);
  }

  key(name, seq) {
    let h = 0;
    for (const c of name) h = (h * 31 + c.charCodeAt(0)) % 1000003;
    return h * 1000000 + seq;
  }

  pending() {
    return this.ctx.storage.sql.exec("SELECT count(*) AS n FROM pending").one().n;
  }
}

export default {
  async fetch(request, env) {
    const room = new URL(request.url).pathname.split("/").filter(Boolean)[0];
    if (!room) return new Response("POST /<room> | GET /<room>\n", { status: 404 });
    const stub = env.ROOMS.getByName(room);
    if (request.method === "POST") {
      await stub.named(room);
      return Response.json({ pending: await stub.post(await request.text()) });
    }
    const { results } = await env.DB.prepare(
      "SELECT body FROM entries WHERE room = ? ORDER BY id").bind(room).all();
    return Response.json({ ...(await stub.report()), archived: results.map((r) => r.body) });
  },
};
