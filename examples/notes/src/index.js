// POST / with a body adds a note; GET / lists them (newest first).
export default {
  async fetch(request, env) {
    if (request.method === "POST") {
      const body = await request.text();
      const { meta } = await env.DB.prepare("INSERT INTO notes (body, created_at) VALUES (?, ?)")
        .bind(body, Date.now()).run();
      return Response.json({ id: meta.last_row_id }, { status: 201 });
    }
    const { results } = await env.DB.prepare(
      "SELECT id, body, created_at FROM notes ORDER BY id DESC LIMIT 50").all();
    return Response.json(results);
  },
};
