// The Workers rate limiting API for tenant code (`env.X.limit({key})`), over the
// platform's WdlRatelimit stub (workerd/gateway/ratelimit.js).
//
// Delivered as `__wdl/ratelimit.js`; the shim replaces each raw stub with
// `wrapRatelimit(stub, name)`. Argument checks and their messages are Miniflare's
// (miniflare/dist/src/workers/ratelimit/ratelimit.worker.js, the behaviour
// reference): options an object with only `key`, `limit`, `period`; `key` a string
// (default ""), `limit` a number, `period` 10 or 60 (defaults: the binding's).
// Self-contained: no imports.

const OPTION_KEYS = ["key", "limit", "period"];
const PERIODS = [10, 60];

function validate(test, message) {
  if (!test) throw new Error(message);
}

class Ratelimit {
  #stub;

  constructor(stub) {
    this.#stub = stub;
  }

  async limit(options) {
    validate(typeof options === "object" && options !== null, "invalid rate limit options");
    const unknown = Object.keys(options).filter((k) => !OPTION_KEYS.includes(k));
    validate(unknown.length === 0, `bad rate limit options: [${unknown.join(",")}]`);
    const { key = "", limit, period } = options;
    validate(typeof key === "string", `invalid key: ${key}`);
    // A limit that is not finite would make the window meaningless (NaN, Infinity).
    validate(limit === undefined || (typeof limit === "number" && Number.isFinite(limit)),
             `limit must be a number: ${limit}`);
    validate(period === undefined || typeof period === "number", `period must be a number: ${period}`);
    validate(period === undefined || PERIODS.includes(period), `unsupported period: ${period}`);
    const got = await this.#stub.limit(key, limit, period);
    if (got.error) throw new Error(got.error);
    return { success: got.success };
  }
}
// No Symbol.toStringTag: Miniflare's binding is a plain object ("[object Object]").

export function wrap(stub) {
  return new Ratelimit(stub);
}
