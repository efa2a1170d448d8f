// Careful mode of the Durable Object host (services/objects/watchdog.py).
//
// Every namespace's objects share this one workerd process, so an object method that
// spins stops them all until the supervisor's watchdog kills and replaces the process.
// Who did it? workerd cannot say. After an incident the supervisor restarts the host
// in careful mode (env.CAREFUL_UNTIL, ms since the epoch): until then every call into
// tenant code first takes the host's gate (one fresh entry at a time; a holder that
// takes longer than GATE_HOLD_MS no longer holds the others back) and announces its
// namespace with an awaited POST /enter to the supervisor. The next hang then names
// the culprit: the announced entries that never ended.

const GATE_HOLD_MS = 250;
const ANNOUNCE_TIMEOUT_MS = 1000;
const MAX_DONE = 256;

let gate = null;  // {since, promise}
let done = [];    // tokens of announced entries that ended since the last announcement

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function careful(env) {
  return Date.now() < Number(env.CAREFUL_UNTIL || 0);
}

// Returns the function that ends the entry (a no-op outside careful mode).
export async function enter(env, headers, m) {
  if (!careful(env)) return () => {};
  while (gate !== null && Date.now() - gate.since < GATE_HOLD_MS) {
    await Promise.race([gate.promise, sleep(GATE_HOLD_MS - (Date.now() - gate.since))]);
  }
  let release;
  const mine = { since: Date.now(), promise: new Promise((resolve) => { release = resolve; }) };
  gate = mine;
  const token = crypto.randomUUID();
  const ended = done;
  done = [];
  try {
    const response = await Promise.race([
      env.SUPERVISOR.fetch("http://supervisor/enter", {
        method: "POST", headers,
        body: JSON.stringify({ token, namespace: m.namespace, script: m.script, done: ended }),
      }),
      sleep(ANNOUNCE_TIMEOUT_MS).then(() => null),
    ]);
    if (response && response.body) await response.body.cancel();
  } catch (err) {
    // The supervisor is down: nothing to tell, the call goes on.
  }
  let over = false;
  return () => {
    if (over) return;
    over = true;
    if (done.length < MAX_DONE) done.push(token);
    if (gate === mine) gate = null;
    release();
  };
}
