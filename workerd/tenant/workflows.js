// Workflows for tenant code: the binding (`env.MY_WORKFLOW.create()` …) over the
// platform's WdlWorkflow stub, and the runner that replays an instance's
// history into the tenant's `WorkflowEntrypoint.run(event, step)`.
//
// Replay (docs/workflows.md): the engine calls the runner with the history
// (recorded step outcomes by key). `step.do` / `sleep` / `waitForEvent` of a
// recorded key return the recorded outcome at once; the first unrecorded one
// runs (a step) or is announced (a sleep, a wait), the invocation ends with that
// report and `run()` is left suspended forever: the engine records the report
// and calls again. One unrecorded step per invocation, so parallel steps
// (`Promise.all`) run one after another and none runs twice once recorded.
// Keys are `<kind>:<name>#<n>`, n counting repeats of a name, as Miniflare does.
import { WorkerEntrypoint } from "cloudflare:workers";

const NEVER = new Promise(() => {});
const UNITS = { millisecond: 1, second: 1000, minute: 60000, hour: 3600000, day: 86400000,
                week: 604800000, month: 2592000000, year: 31536000000 };

export function durationMs(value) {
  if (typeof value === "number" && Number.isFinite(value) && value >= 0) return value;
  const m = typeof value === "string" && /^\s*(\d+(?:\.\d+)?)\s*([a-z]+?)s?\s*$/.exec(value);
  if (!m || UNITS[m[2]] === undefined) {
    throw new TypeError(`Invalid duration: ${JSON.stringify(value)}`);
  }
  return Number(m[1]) * UNITS[m[2]];
}

// Values travel as JSON (docs/compatibility.md: Workflows): wrapped so `undefined` survives.
function encode(value) {
  return value === undefined ? { u: true } : { v: JSON.parse(JSON.stringify(value)) };
}

function decode(cell) {
  return cell && cell.u ? undefined : cell ? cell.v : undefined;
}

function toError(e) {
  const err = new Error(e && e.message !== undefined ? e.message : String(e));
  if (e && e.name) err.name = e.name;
  return err;
}

// Errors are stored and replayed on every invocation: bounded as the engine bounds them
// (services/workflows/bounds.py; docs/workflows.md, "Limits").
const MAX_ERROR_NAME = 256;
const MAX_ERROR_MESSAGE = 8192;
const MAX_STEP_NAME = 256;

function clip(text, limit) {
  if (text.length <= limit) return text;
  const marker = `... [truncated ${text.length - limit} characters]`;
  return text.slice(0, Math.max(0, limit - marker.length)) + marker;
}

function errorOf(err) {
  return { name: clip(String((err && err.name) || "Error"), MAX_ERROR_NAME),
           message: clip(String(err && err.message !== undefined ? err.message : err),
                         MAX_ERROR_MESSAGE) };
}

// A NonRetryableError, by name - or by message: thrown in a dynamic Worker's step
// callback (Dynamic Workflows), it crosses RPC as an Error whose message starts with
// "NonRetryableError: " (workerd keeps built-in error types only), which Cloudflare's
// engine also takes as non-retryable. -> the error as it is recorded, or null.
function nonRetryable(err) {
  if (!err) return null;
  if (err.name === "NonRetryableError") return err;
  const message = typeof err.message === "string" ? err.message : "";
  if (!message.startsWith("NonRetryableError")) return null;
  return { name: "NonRetryableError", message: message.replace(/^NonRetryableError:?\s*/, "") };
}

// What an instance whose run() threw errors with: Cloudflare's engine (as Miniflare vendors
// it) turns a NonRetryableError into a WorkflowFatalError with a fixed message, or keeps
// its own message under the workflows_preserve_non_retryable_error_message flag.
function instanceError(err) {
  const fatal = nonRetryable(err);
  if (fatal === null) return errorOf(err);
  const flags = globalThis.Cloudflare && globalThis.Cloudflare.compatibilityFlags;
  if (flags && flags.workflows_preserve_non_retryable_error_message === true) {
    return errorOf(fatal);
  }
  return { name: "WorkflowFatalError", message: "The execution of the Workflow instance was " +
    "terminated, as a step threw an NonRetryableError and it was not handled" };
}

function backoffMs(retries, attempt) {
  const delay = durationMs(retries.delay);
  if (retries.backoff === "constant") return delay;
  if (retries.backoff === "linear") return delay * attempt;
  return delay * 2 ** (attempt - 1);
}

function withTimeout(promise, ms) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(
      `Execution timed out after ${ms}ms`), { name: "WorkflowTimeoutError" })), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

export async function drive(instance, payload) {
  const steps = (payload.history && payload.history.steps) || {};
  const attempts = (payload.history && payload.history.attempts) || {};
  // The last invocation failed where the step could not report it (its result too deep
  // or too large to record, the invocation timed out or was cut off): that was an
  // attempt of the current step, charged to it under its own retry policy.
  const failure = payload.history && payload.history.failure;
  const counts = new Map();
  let claimed = false;
  let report = null;
  let stopNow;
  const stopped = new Promise((resolve) => { stopNow = resolve; });
  const keyFor = (kind, name) => {
    if (typeof name !== "string" || name === "") {
      throw new TypeError("Step name must be a non-empty string");
    }
    if (name.length > MAX_STEP_NAME) {
      throw new TypeError(`Step name must be at most ${MAX_STEP_NAME} characters`);
    }
    const base = `${kind}:${name}`;
    const n = (counts.get(base) || 0) + 1;
    counts.set(base, n);
    return `${base}#${n}`;
  };
  const stop = (r) => { report = r; stopNow(); return NEVER; };
  const recorded = (key) => {
    const rec = steps[key];
    if (!rec) return null;
    if (!rec.ok) throw toError(rec.error);
    return rec;
  };

  const step = {
    async do(name, configOrFn, maybeFn) {
      const [config, fn] = typeof configOrFn === "function" ? [{}, configOrFn]
        : [configOrFn || {}, maybeFn];
      if (typeof fn !== "function") throw new TypeError("step.do needs a callback");
      const key = keyFor("do", name);
      const rec = recorded(key);
      if (rec) return decode(rec.value);
      if (claimed) return NEVER;
      claimed = true;
      const attempt = (attempts[key] || 0) + 1;
      const retries = { limit: 5, delay: 10000, backoff: "exponential", ...(config.retries || {}) };
      if (failure) {
        const final = attempt > retries.limit;
        return stop({ kind: "step", key, ok: false, error: errorOf(failure.error), attempt,
                      final, delay_ms: final ? 0 : backoffMs(retries, attempt) });
      }
      try {
        const value = await withTimeout(Promise.resolve().then(() => fn()),
                                        durationMs(config.timeout ?? "10 minutes"));
        return stop({ kind: "step", key, ok: true, value: encode(value), attempt });
      } catch (err) {
        const fatal = nonRetryable(err);
        const final = fatal !== null || attempt > retries.limit;
        return stop({ kind: "step", key, ok: false, error: errorOf(fatal || err), attempt, final,
                      delay_ms: final ? 0 : backoffMs(retries, attempt) });
      }
    },
    async sleep(name, duration) {
      const key = keyFor("sleep", name);
      if (recorded(key) || claimed) return recorded(key) ? undefined : NEVER;
      claimed = true;
      return stop({ kind: "sleep", key, until: Date.now() + durationMs(duration) });
    },
    async sleepUntil(name, timestamp) {
      const key = keyFor("sleep", name);
      const until = timestamp instanceof Date ? timestamp.getTime() : Number(timestamp);
      if (!Number.isFinite(until)) throw new TypeError("sleepUntil needs a Date or a timestamp");
      if (recorded(key) || claimed) return recorded(key) ? undefined : NEVER;
      claimed = true;
      return stop({ kind: "sleep", key, until });
    },
    async waitForEvent(name, options = {}) {
      const key = keyFor("wait", name);
      if (typeof options.type !== "string" || !/^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}$/.test(options.type)) {
        throw new TypeError("waitForEvent needs a `type` of letters, digits, - and _ " +
                            "(at most 100)");
      }
      const rec = recorded(key);
      if (rec) {
        const ev = rec.value;
        return { payload: ev.payload, timestamp: new Date(ev.timestamp), type: ev.type };
      }
      if (claimed) return NEVER;
      claimed = true;
      return stop({ kind: "wait", key, type: options.type,
                    timeout_ms: durationMs(options.timeout ?? "24 hours") });
    },
  };

  const event = { payload: payload.params, timestamp: new Date(payload.created_at),
                  instanceId: payload.instance_id };
  const run = Promise.resolve().then(() => instance.run(event, step));
  const outcome = await Promise.race([
    stopped.then(() => ({ stopped: true })),
    run.then((value) => ({ value }), (error) => ({ error })),
  ]);
  if (outcome.stopped || report) return report;
  if ("error" in outcome) return { kind: "error", error: instanceError(outcome.error) };
  return { kind: "complete", output: outcome.value === undefined ? null
    : JSON.parse(JSON.stringify(outcome.value)) };
}

// The gateway calls `__WdlWorkflows.run(payload)` (exported by the platform's main module).
// The registry's main_export of the workflow kind (eventlog/bindings/workflow.py).
export function mainExport(tenantModule) {
  return class extends WorkerEntrypoint {
    async run(payload) {
      const Cls = tenantModule[payload.class_name];
      if (typeof Cls !== "function") {
        return { kind: "error", error: { name: "Error", message:
          `class ${payload.class_name} is not exported by the worker` } };
      }
      return drive(new Cls(this.ctx, this.env), payload);
    }
  };
}

// --- the binding -----------------------------------------------------------------

function answer(result) {
  if (result && result.refused) throw toError(result.refused);
  return result;
}

class WorkflowInstance {
  #stub;
  constructor(stub, id) {
    this.#stub = stub;
    Object.defineProperty(this, "id", { value: id, enumerable: true });
  }
  async status() { return answer(await this.#stub.status(this.id)); }
  async pause() { answer(await this.#stub.control(this.id, "pause")); }
  async resume() { answer(await this.#stub.control(this.id, "resume")); }
  async terminate() { answer(await this.#stub.control(this.id, "terminate")); }
  async restart() { answer(await this.#stub.control(this.id, "restart")); }
  async sendEvent(event = {}) {
    answer(await this.#stub.sendEvent(this.id, { type: event.type, payload: event.payload }));
  }
}

function options(o) {
  if (o === undefined || o === null) return {};
  if (typeof o !== "object") throw new TypeError("create() takes an options object");
  const out = {};
  if (o.id !== undefined) out.id = o.id;
  if (o.params !== undefined) out.params = JSON.parse(JSON.stringify(o.params));
  return out;
}

export function wrap(stub) {
  return {
    async create(o) {
      const r = answer(await stub.create([options(o)]));
      return new WorkflowInstance(stub, r.instances[0].id);
    },
    async createBatch(list) {
      if (!Array.isArray(list)) throw new TypeError("createBatch() takes an array");
      const r = answer(await stub.create(list.map(options)));
      return r.instances.map((i) => new WorkflowInstance(stub, i.id));
    },
    async get(id) {
      answer(await stub.status(String(id)));
      return new WorkflowInstance(stub, String(id));
    },
  };
}
