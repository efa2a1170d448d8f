// GET  /counter         -> a KV counter, incremented per request
// PUT  /files/<key>     -> store the request body in R2
// GET  /files/<key>     -> read it back (with its content type)
// GET  /files           -> list the bucket
// GET  /hello           -> the `hello` worker, through the service binding
// GET  /fetch?url=URL   -> an outbound fetch, under the namespace's egress policy
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const [, first, ...rest] = url.pathname.split("/");
    if (first === "counter") {
      const n = Number(await env.CACHE.get("counter") ?? "0") + 1;
      await env.CACHE.put("counter", String(n), { metadata: { at: Date.now() } });
      return Response.json({ counter: n, greeting: env.GREETING });
    }
    if (first === "files" && rest.length && request.method === "PUT") {
      const object = await env.FILES.put(rest.join("/"), request.body, {
        httpMetadata: { contentType: request.headers.get("content-type") ?? "text/plain" },
      });
      return Response.json({ key: object.key, size: object.size, etag: object.etag });
    }
    if (first === "files" && rest.length) {
      const object = await env.FILES.get(rest.join("/"));
      if (object === null) return new Response("not found\n", { status: 404 });
      const headers = new Headers({ etag: object.httpEtag });
      object.writeHttpMetadata(headers);
      return new Response(object.body, { headers });
    }
    if (first === "files") {
      const listing = await env.FILES.list();
      return Response.json(listing.objects.map((o) => ({ key: o.key, size: o.size })));
    }
    if (first === "hello") return env.HELLO.fetch("https://hello/from-bindings");
    if (first === "fetch") {
      try {
        const r = await fetch(url.searchParams.get("url"));
        return new Response(`upstream answered ${r.status}\n`);
      } catch (err) {
        return new Response(`refused: ${err.message}\n`, { status: 502 });
      }
    }
    return new Response("try /counter, /files/<key>, /hello or /fetch?url=\n", { status: 404 });
  },
};
