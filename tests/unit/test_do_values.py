"""Structured-clone values as text (workerd/tenant/values.js), for Durable Object RPC and
`v8` queue messages, against V8's own structured clone: thousands of random values, each
sent through the codec and through `structuredClone`, must come out the same, shared and
circular references and class instances included; what Workers RPC refuses the codec
refuses (strict mode) with Cloudflare's DataCloneError messages; queue messages of the
previous encoding still decode."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from harness.endpoints import ROOT
from services.dataplane.config import workerd_dir

pytestmark = pytest.mark.unit

SCRIPT = r"""
const { encodeValue, decodeValue, RPC } = await import(%(module)s);
class Point { constructor() { this.x = 1; this.$wdl = "u"; } }
let seed = %(seed)d;
const rnd = () => ((seed = (seed * 1103515245 + 12345) %% 2147483648) / 2147483648);
const pick = (xs) => xs[Math.floor(rnd() * xs.length)];
const VIEWS = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array,
               Uint32Array, Float32Array, Float64Array];
const ERRORS = [Error, RangeError, TypeError, SyntaxError, ReferenceError, EvalError, URIError];
function leaf() {
  return pick([
    () => null, () => undefined, () => true, () => rnd() < 0.5, () => Math.floor(rnd() * 1e6),
    () => rnd() * 1e9 - 5e8, () => NaN, () => -0, () => Infinity, () => -Infinity,
    () => BigInt(Math.floor(rnd() * 1e9)) ** 3n * (rnd() < 0.5 ? -1n : 1n),
    () => "s" + Math.floor(rnd() * 100) + pick(["", "é", "✓", "\u0000", "\ud83d\ude00", "$wdl"]),
    () => new Date(Math.floor(rnd() * 4e12)), () => new Date(NaN),
    () => new RegExp(pick(["a+b", "^x$", "[0-9]{2}", "\\/"]), pick(["", "g", "gi", "msu"])),
    () => new (pick(ERRORS))("m" + Math.floor(rnd() * 10)),
    () => { const e = new Error("named"); e.name = pick(["Custom", "TypeError"]); return e; },
    () => new Uint8Array(Array.from({ length: Math.floor(rnd() * 20) }, () => rnd() * 256)).buffer,
    () => { const V = pick(VIEWS); const b = new V(Math.floor(rnd() * 6) + 2);
            for (let i = 0; i < b.length; i++) b[i] = rnd() * 1000 - 500;
            return rnd() < 0.3 ? b.subarray(1) : b; },
    () => new BigInt64Array([BigInt(Math.floor(rnd() * 1e6)) - 500000n]),
    () => new DataView(new Uint8Array([1, 2, 3, 4]).buffer, 1, 2),
    () => new String("boxed"), () => new Number(rnd()), () => new Boolean(rnd() < 0.5),
    () => new Point(), () => Object.assign(Object.create(null), { z: rnd() }),
  ])();
}
function value(depth, pool) {
  if (depth <= 0 || rnd() < 0.3) return leaf();
  if (pool.length && rnd() < 0.1) return pick(pool);  // shared or circular
  const kind = pick(["array", "object", "map", "set", "holes", "tagged"]);
  let out;
  if (kind === "array") out = [];
  else if (kind === "holes") { out = new Array(4); }
  else if (kind === "map") out = new Map();
  else if (kind === "set") out = new Set();
  else out = {};
  pool.push(out);
  const n = Math.floor(rnd() * 4);
  for (let i = 0; i < n; i++) {
    const v = value(depth - 1, pool);
    if (kind === "array") out.push(v);
    else if (kind === "holes") out[pick([0, 2, 3])] = v;
    else if (kind === "map") out.set(rnd() < 0.5 ? "k" + i : value(1, pool), v);
    else if (kind === "set") out.add(v);
    else if (kind === "tagged") out[pick(["$wdl", "v", "i", "t"])] = v;
    else out["k" + i] = v;
  }
  return out;
}
%(describe)sconst out = { checked: 0, mismatches: [], refusals: [] };
for (let i = 0; i < %(count)d; i++) {
  const v = value(4, []);
  const want = describe(structuredClone(v));
  const got = describe(decodeValue(encodeValue(v)));
  out.checked++;
  if (want !== got && out.mismatches.length < 5) out.mismatches.push({ want, got });
}
for (const bad of [Symbol("s"), () => 1, new Point(), Object.create(null), [1, { f() {} }],
                   new Map([[1, Symbol("deep")]])]) {
  try { encodeValue(bad, RPC); out.refusals.push("accepted"); }
  catch (e) { out.refusals.push(`${e.name}: ${e.message}`); }
}
// What tenant/queues.js wrote for `v8` bodies before values.js.
out.legacy = describe(decodeValue(JSON.stringify([
  { $wdl: "map", v: [["k", { $wdl: "date", v: 42 }]] }, { $wdl: "u8", v: "AQI=" },
  { $wdl: "bytes", v: "AQI=" }, { $wdl: "bigint", v: "5" }, { $wdl: "num", v: "NaN" },
  { $wdl: "undefined" }, { $wdl: "obj", v: { $wdl: 1 } }, { $wdl: "set", v: [1] }])));
console.log(JSON.stringify(out));
"""


def describe_source() -> str:
    """The conformance worker's `describe` (one definition of what "the same" means)."""
    source = (ROOT / "tests" / "workers" / "do_conformance.js").read_text()
    start = source.index("function describe(")
    return source[start:source.index("\n}\n", start) + 3]


def run(seed: int, count: int) -> dict[str, object]:
    node = shutil.which("node")
    assert node is not None, "node is required (it installs workerd via npm)"
    module = (workerd_dir() / "tenant" / "values.js").as_uri()
    script = SCRIPT % {"module": json.dumps(module), "seed": seed, "count": count,
                       "describe": describe_source()}
    done = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("seed", [1, 7, 2026])
def test_random_values_come_out_as_structured_clone_makes_them(seed: int) -> None:
    out = run(seed, 1500)
    assert out["checked"] == 1500
    assert out["mismatches"] == []


def test_what_structured_clone_refuses_is_refused_with_its_message() -> None:
    refusals = run(1, 0)["refusals"]
    assert refusals == [
        "DataCloneError: Symbol(s) could not be cloned.",
        "DataCloneError: Functions cannot be passed to or returned from a Durable Object "
        "over WDL's RPC.",
        'DataCloneError: Could not serialize object of type "Point". '
        "This type does not support serialization.",
        'DataCloneError: Could not serialize object of type "Object". '
        "This type does not support serialization.",
        "DataCloneError: Functions cannot be passed to or returned from a Durable Object "
        "over WDL's RPC.",
        "DataCloneError: Symbol(deep) could not be cloned.",
    ]


def test_queue_messages_of_the_previous_encoding_still_decode() -> None:
    assert run(1, 0)["legacy"] == (
        "[Map{string:k=>Date:42},Uint8Array:1 2,ArrayBuffer:1 2,bigint:5,number:NaN,"
        "undefined,{$wdl:number:1},Set{number:1}]")
