// GET /<name>/inc      -> increments the counter object <name> (SQLite storage)
// GET /<name>/remind   -> sets an alarm 200 ms ahead; alarm() records that it ran
// GET /<name>          -> {count, reminders, alarmPending}
import { DurableObject } from "cloudflare:workers";

export class Counter extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.storage.sql.exec(
      "CREATE TABLE IF NOT EXISTS hits (at INTEGER NOT NULL); " +
      "CREATE TABLE IF NOT EXISTS reminders (at INTEGER NOT NULL)");
  }

  increment() {
    this.ctx.storage.sql.exec("INSERT INTO hits VALUES (?)", Date.now());
    return this.state();
  }

  async remind(ms) {
    await this.ctx.storage.setAlarm(Date.now() + ms);
    return "reminder set";
  }

  async alarm() {
    this.ctx.storage.sql.exec("INSERT INTO reminders VALUES (?)", Date.now());
  }

  async report() {
    return { ...this.state(), alarmPending: (await this.ctx.storage.getAlarm()) !== null };
  }

  state() {
    const one = (sql) => this.ctx.storage.sql.exec(sql).one().n;
    return { count: one("SELECT count(*) AS n FROM hits"),
             reminders: one("SELECT count(*) AS n FROM reminders") };
  }
}

export default {
  async fetch(request, env) {
    const [name, action] = new URL(request.url).pathname.split("/").filter(Boolean);
    if (!name) return new Response("GET /<name>/inc | /<name>/remind | /<name>\n", { status: 404 });
    const counter = env.COUNTER.getByName(name);
    if (action === "inc") return Response.json(await counter.increment());
    if (action === "remind") return Response.json(await counter.remind(200));
    return Response.json(await counter.report());
  },
};
