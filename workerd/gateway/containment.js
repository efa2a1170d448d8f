// What the watchdog needs to find a culprit (services/state/incidents.py).
//
// workerd cannot say which isolate spun or blew up its process, so the gateway
// says beforehand, for free: every barrier round it sends to the state service
// carries the targets of the requests waiting for that round ("marks") and of
// the requests past the barrier that have not finished ("admitted"). A
// request can only reach tenant code after a round that started after it
// arrived, so a process that stops answering has its culprit in its last
// round. Targets on probation (several suspects last time) run one at a time
// per process, each announced with an awaited /enter: that names the culprit
// exactly. Such a request is reported *gated* in the rounds (a fourth element,
// true): it reaches tenant code only as an announced entry, so the state
// service leaves it out of a round's suspects. Whether a request is gated is
// decided when it is marked and kept (gateway.js), so a target reported gated
// never runs ungated.

const MAX_TARGETS = 256;
const MAX_DONE = 256;
const GATE_WAIT_MS = 5000;
const ANNOUNCE_TIMEOUT_MS = 1000;

const marks = new Map();     // "ns/worker" (+ GATED) -> [ns, worker, version|null(, true)]
const admitted = new Map();  // "ns/worker" (+ GATED) -> {target: [...as marks], n}
const GATED = "\u0000g";     // key suffix of gated entries (names never hold NUL)
let truncated = false;       // a round left a target out: it cannot single one out
let done = [];               // tokens of announced entries that ended
let gate = null;             // the probation request running: {since, promise}

// `key` (ns + "/" + worker) is passed by callers that have it cached (route entries).
function entry(ns, worker, version, gated) {
  return gated ? [ns, worker, version || null, true] : [ns, worker, version || null];
}

export function mark(ns, worker, version, key = ns + "/" + worker, gated = false) {
  if (gated) key += GATED;
  if (marks.has(key)) return;
  if (marks.size >= MAX_TARGETS) {
    truncated = true;
    return;
  }
  marks.set(key, entry(ns, worker, version, gated));
}

// A request whose target is not known before its round: the round must not
// single anyone out.
export function markUnknown() {
  truncated = true;
}

// Returns the function that ends the admission.
export function admit(ns, worker, version, key = ns + "/" + worker, gated = false) {
  if (gated) key += GATED;
  let a = admitted.get(key);
  if (!a) admitted.set(key, (a = { target: entry(ns, worker, version, gated), n: 0 }));
  if (version) a.target[2] = version;
  a.n += 1;
  let ended = false;
  return () => {
    if (ended) return;
    ended = true;
    a.n -= 1;
    if (a.n === 0 && admitted.get(key) === a) admitted.delete(key);
  };
}

// The version of an admitted target, once its route is known.
export function nameVersion(ns, worker, version, key = ns + "/" + worker, gated = false) {
  const a = admitted.get(gated ? key + GATED : key);
  if (a && version) a.target[2] = version;
}

// The body of one barrier round; taken when the round starts.
export function roundMarkers(instance) {
  const targets = [...marks.values()];
  for (const a of admitted.values()) {
    if (targets.length >= MAX_TARGETS) {
      truncated = true;
      break;
    }
    targets.push(a.target);
  }
  const body = { instance, targets, truncated, done };
  marks.clear();
  truncated = false;
  done = [];
  return body;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// POST /enter before tenant code runs. Failing to announce never fails the request.
export async function announce(env, target, token) {
  const ended = done;
  done = [];
  try {
    const response = await Promise.race([
      env.STATE.fetch("http://state/enter", {
        method: "POST",
        headers: { "content-type": "application/json",
                   "x-wdl-internal-token": env.INTERNAL_TOKEN },
        body: JSON.stringify({ instance: env.INSTANCE, token, target, done: ended }),
      }),
      sleep(ANNOUNCE_TIMEOUT_MS).then(() => null),
    ]);
    if (response && response.body) await response.body.cancel();
  } catch (err) {
    // The state service is down: the round markers still tell most of it.
  }
}

export function ended(token) {
  if (done.length < MAX_DONE) done.push(token);
}

// Probation: one request at a time per process, announced. Returns the
// function that ends it. A holder that takes longer than GATE_WAIT_MS (slow
// I/O) no longer holds the others back.
export async function probationEnter(env, target) {
  while (gate !== null && Date.now() - gate.since < GATE_WAIT_MS) {
    const left = GATE_WAIT_MS - (Date.now() - gate.since);
    await Promise.race([gate.promise, sleep(left)]);
  }
  let release;
  const mine = { since: Date.now(), promise: new Promise((resolve) => { release = resolve; }) };
  gate = mine;
  const token = crypto.randomUUID();
  await announce(env, target, token);
  let over = false;
  return () => {
    if (over) return;
    over = true;
    ended(token);
    if (gate === mine) gate = null;
    release();
  };
}
