// The gateway's explicit garbage collection of dropped dynamic Workers' stubs.
//
// workerd releases an unnamed child's isolate (LOADER.load) when V8 collects its
// WorkerStub; the gateway's heap grows by a few bytes per child, so V8 would not
// collect for thousands of them (measured on the pinned workerd: +1.6 MB of RSS per
// dropped child). The gateway's workerd runs with `--expose-gc-as=__wdl_gc`
// (services/dataplane/config.py GC_GLOBAL), captured here when the gateway's
// modules load; tenant isolates get the same global, emptied by tenant/shim.js
// before any tenant module runs.

// services/dataplane/config.py GC_GLOBAL (tests/unit/test_loader_children.py).
const GC_GLOBAL = "__wdl_gc";
const collect = typeof globalThis[GC_GLOBAL] === "function" ? globalThis[GC_GLOBAL] : null;
// Dropped stubs between two collections: at most this many isolates wait for one.
const GC_EVERY = 32;

let dropped = 0;

// A child's stub was dropped (evicted, or a load() child's call ended).
export function released() {
  dropped += 1;
  if (dropped >= GC_EVERY && collect !== null) {
    dropped = 0;
    collect();
  }
}
