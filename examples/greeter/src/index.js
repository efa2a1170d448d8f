// Uses a var, a JSON var, a secret and a cron trigger.
let lastTick = null;

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/tick") {
      return Response.json({ lastTick });
    }
    if (url.pathname === "/whoami") {
      // Never echo a secret: prove it is there by its length only.
      const auth = request.headers.get("authorization") || "";
      const ok = env.API_TOKEN !== undefined && auth === `Bearer ${env.API_TOKEN}`;
      return Response.json({ authorized: ok, secretConfigured: env.API_TOKEN !== undefined });
    }
    const place = env.PLACES[url.searchParams.get("at") || "home"] || "somewhere";
    return new Response(`${env.GREETING} from ${place}!\n`, {
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  },

  async scheduled(controller, env) {
    lastTick = { cron: controller.cron, at: new Date(controller.scheduledTime).toISOString() };
    console.log(`greeter tick ${controller.cron}`);
  },
};
