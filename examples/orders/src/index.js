import { WorkflowEntrypoint } from "cloudflare:workers";

const RULES = { double: 2, triple: 3 };

// The pricing rule runs in its own Dynamic Worker, without network.
function pricing(env, rule) {
  const factor = RULES[rule] ?? 1;
  return env.LOADER.get(`rule-${rule}`, () => ({
    compatibilityDate: "2025-11-17",
    mainModule: "rule.js",
    modules: {
      "rule.js": "import { WorkerEntrypoint } from 'cloudflare:workers';\n" +
        `export default class extends WorkerEntrypoint { price(a) { return a * ${factor}; } }`,
    },
    globalOutbound: null,
  })).getEntrypoint();
}

export class Fulfil extends WorkflowEntrypoint {
  async run(event, step) {
    const order = event.payload;
    const price = await step.do("price", { retries: { limit: 2, delay: 100 } },
      async () => await pricing(this.env, order.rule).price(order.amount));
    await step.sleep("cool off", "1 second");
    const approval = await step.waitForEvent("approval", { type: "approve", timeout: "1 minute" });
    return await step.do("ship", async () => ({ id: order.id, price, by: approval.payload.by }));
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const id = url.searchParams.get("id");
    if (url.pathname === "/order" && request.method === "POST") {
      await env.ORDERS.send(await request.json());
      return Response.json({ queued: true });
    }
    if (url.pathname === "/approve" && request.method === "POST") {
      await (await env.FLOW.get(id)).sendEvent({ type: "approve", payload: { by: "ops" } });
      return Response.json({ approved: id });
    }
    if (url.pathname === "/status") {
      try {
        const { status, output } = await (await env.FLOW.get(id)).status();
        return Response.json({ status, output: output ?? null });
      } catch (e) {
        return Response.json({ status: "unknown", error: e.message }, { status: 404 });
      }
    }
    if (url.pathname === "/dead") {
      const { keys } = await env.DEAD.list();
      return Response.json(keys.map((k) => k.name).sort());
    }
    return new Response("see wrangler.toml", { status: 404 });
  },

  async queue(batch, env) {
    for (const message of batch.messages) {
      const order = message.body;
      if (batch.queue === "orders-dlq") {
        await env.DEAD.put(order.id, String(message.attempts));
      } else if (order.bad) {
        message.retry();
      } else {
        try {
          await env.FLOW.create({ id: order.id, params: order });
        } catch (e) {
          // At-least-once delivery: a redelivered order finds its workflow started.
          await (await env.FLOW.get(order.id)).status();
        }
      }
      if (batch.queue === "orders-dlq" || !order.bad) message.ack();
    }
  },
};
