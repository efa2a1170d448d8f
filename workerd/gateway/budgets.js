// Per-request budgets of a namespace (namespace.limits_set): wall time, and
// outbound fetches ("subrequests") counted by the egress, which is platform
// code. Each request handed to a tenant gets a random name (x-wdl-request-id);
// the tenant shim carries it on every fetch() the request makes
// (tenant/requests.js), including from ctx.waitUntil() work after the
// response, which is why a name outlives its response by AFTER_RESPONSE_MS.

export const HEADER = "x-wdl-request-id";
export const DEFAULT_SUBREQUESTS = 1000;
const AFTER_RESPONSE_MS = 30000;
const MAX_OPEN_MS = 20 * 60 * 1000;
const MAX_TRACKED = 100000;

const live = new Map();  // name -> {namespace, worker, left, opened, until}

function sweep(now) {
  let looked = 0;
  for (const [id, r] of live) {
    if (looked++ > 64 && live.size <= MAX_TRACKED) break;
    if (r.until <= now || now - r.opened > MAX_OPEN_MS || live.size > MAX_TRACKED) {
      live.delete(id);
    } else if (r.until !== Infinity) {
      break;  // closed later than this one: not expired either
    }
  }
}

// `tail`: the name of a tail() delivery (gateway.js), see fromTailDelivery.
// `outbound`: a dispatched call's {key, params} (dispatch.js): the egress hands the
// request's fetches to that outbound Worker with those parameters.
export function openRequest(namespace, worker, limits, tail = false, outbound = null) {
  const now = Date.now();
  sweep(now);
  const id = crypto.randomUUID();
  const left = (limits && limits.subrequests) || DEFAULT_SUBREQUESTS;
  const record = { namespace, worker, left, opened: now, until: Infinity, tail, outbound };
  live.set(id, record);
  return {
    id,
    close() { record.until = Date.now() + AFTER_RESPONSE_MS; },
    spendAll() { record.left = 0; },  // a budget of zero subrequests (dispatch.js)
  };
}

// Whether `id` names a live tail() delivery of `namespace`: a service binding called
// with it is run so that it feeds no tail consumer (no loops, docs/tail-workers.md).
export function fromTailDelivery(id, namespace) {
  const r = typeof id === "string" ? live.get(id) : undefined;
  return r !== undefined && r.tail === true && r.namespace === namespace;
}

// The outbound parameters of the live dispatched request `id` of `namespace` made for
// the outbound Worker `key`, or null.
export function outboundOf(id, namespace, key) {
  const r = typeof id === "string" ? live.get(id) : undefined;
  if (!r || r.namespace !== namespace || !r.outbound || r.outbound.key !== key) return null;
  return r.outbound.params;
}

// Called by the egress for each outbound fetch: a reason to refuse, or null.
// A fetch without a name (outside any request the gateway handed over) is not
// limited; a name that is not live, or of another namespace, is refused.
export function spendSubrequest(id, namespace) {
  if (id === null) return null;
  const r = live.get(id);
  if (!r || r.namespace !== namespace) {
    return "this subrequest does not belong to a live request of the namespace";
  }
  if (r.left <= 0) return "Too many subrequests.";
  r.left -= 1;
  return null;
}

// Without a wall budget, the tenant's promise itself (no extra async frame per request).
export function withinWall(work, limits, what) {
  const wall = limits && limits.wall_ms;
  return wall ? raceWall(work, wall, what) : work;
}

async function raceWall(work, wall, what) {
  let timer;
  const over = new Promise((resolve) => {
    timer = setTimeout(() => resolve(null), wall);
  });
  try {
    const result = await Promise.race([work, over]);
    if (result === null) {
      return new Response(JSON.stringify({ error: "wall_time_exceeded",
        message: `${what} did not answer within its wall-time budget of ${wall} ms` }) + "\n",
        { status: 503, headers: { "content-type": "application/json",
                                   "cache-control": "no-store" } });
    }
    return result;
  } finally {
    clearTimeout(timer);
  }
}
