// WdlChildren: where a gateway process keeps tenants' named dynamic Workers
// (`env.LOADER.get(id, ...)`, docs/loaders.md "Limits").
//
// workerd never releases an isolate loaded under a name (LOADER.get), so the
// gateway loads every child UNNAMED (LOADER.load) and keeps the WorkerStub
// itself, in a least-recently-used map. A WorkerStub is usable only in the I/O
// context that made it, except inside a Durable Object, whose context lives
// across requests: hence this class, an in-memory (ephemeralLocal) Durable
// Object of the gateway's own worker, one instance per tenant namespace per
// process (`env.CHILDREN.get(namespace)`), so a broken instance resets only its
// own namespace's children.
//
// Every instance lives in the gateway isolate, so this module's state is one per
// process: a budget of resident children (LOADER_RESIDENT, GatewayOptions.
// loader_resident) shared by all namespaces. When it is full, the
// least-recently-used child of the namespace holding the MOST residents goes:
// a namespace alone may use the whole budget, one spraying children only ever
// evicts its own once it holds more than the others (fair share), nobody is
// refused. Evicting drops the stub; workerd releases the isolate when V8
// collects it, which the gateway makes happen (collect.js).
import { DurableObject } from "cloudflare:workers";
import { childCode, egressProps, entrypointOf, startFailure } from "./loader.js";
import { released } from "./collect.js";

export const DEFAULT_RESIDENT = 256;
// workerd drops an idle Durable Object instance after about ten seconds (with
// its children): a timer keeps an instance that holds children alive.
const KEEPALIVE_MS = 4000;

let budget = DEFAULT_RESIDENT;
const residents = new Map();  // namespace -> its live instance's LRU map (key -> entry)
let resident = 0;
let loads = 0;
let evictions = 0;

// For /__wdl/healthz (the supervisor's metrics and recycle backstop).
export function childStats() {
  return { children: resident, childLoads: loads, childEvictions: evictions,
           childBudget: budget };
}

function makeRoom(keep) {
  while (resident > budget) {
    let victim = null;
    let most = 0;
    let oldest = Infinity;
    for (const lru of residents.values()) {
      if (lru.size === 0) continue;
      const head = lru.values().next().value;
      if (head === keep) continue;
      if (lru.size > most || (lru.size === most && head.lastUse < oldest)) {
        victim = lru;
        most = lru.size;
        oldest = head.lastUse;
      }
    }
    if (victim === null) break;
    victim.delete(victim.keys().next().value);
    resident -= 1;
    evictions += 1;
    released();
  }
}

export class WdlChildren extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    const configured = Number.parseInt(env.LOADER_RESIDENT, 10);
    if (configured > 0) budget = configured;
    this.lru = new Map();
    this.timer = null;
  }

  // This instance's map, registered for its namespace (a new instance after a
  // reset replaces the old one's: those children are gone with its I/O context).
  #lru(namespace) {
    const known = residents.get(namespace);
    if (known !== this.lru) {
      if (known) resident -= known.size;
      residents.set(namespace, this.lru);
      resident += this.lru.size;
    }
    if (this.timer === null) {
      this.timer = setInterval(() => {
        if (this.lru.size === 0) {
          clearInterval(this.timer);
          this.timer = null;
        }
      }, KEEPALIVE_MS);
    }
    return this.lru;
  }

  #drop(lru, key, entry) {
    if (lru.get(key) === entry) {
      lru.delete(key);
      if (residents.get(entry.namespace) === lru) resident -= 1;
    }
  }

  // The child's stub: resident, or loaded now (the tenant's callback is asked
  // only then; if it throws or its code is refused, nothing stays recorded).
  async #stub(props, key, handle) {
    const lru = this.#lru(props.namespace);
    let entry = lru.get(key);
    if (entry) {
      lru.delete(key);
      lru.set(key, entry);
      entry.lastUse = Date.now();
    } else {
      entry = { stub: null, ready: null, lastUse: Date.now(), namespace: props.namespace };
      const outbound = this.ctx.exports.WdlEgress({ props: egressProps(props) });
      entry.ready = (async () => {
        const code = childCode(await handle.code(), outbound);
        entry.stub = this.env.LOADER.load(code);
        loads += 1;
      })();
      lru.set(key, entry);
      resident += 1;
      makeRoom(entry);
    }
    if (entry.stub === null) {
      try {
        await entry.ready;
      } catch (err) {
        this.#drop(lru, key, entry);
        throw err;
      }
    }
    return { lru, entry };
  }

  async #call(props, key, handle, call) {
    const { lru, entry } = await this.#stub(props, key, handle);
    try {
      return await call(entrypointOf(entry.stub, handle));
    } catch (err) {
      // A child that did not start: the next call asks the tenant's callback again.
      if (startFailure(err)) this.#drop(lru, key, entry);
      throw err;
    }
  }

  fetchChild(props, key, handle, request) {
    return this.#call(props, key, handle, (ep) => ep.fetch(request));
  }

  callChild(props, key, handle, method, args) {
    return this.#call(props, key, handle, (ep) => ep[method](...args));
  }
}
