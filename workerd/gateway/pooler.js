// Hyperdrive's host -> pooler mapping, for the egress's connect() handler (issue 26).
//
// A tenant's Hyperdrive binding names `<config id>.hyperdrive.wdl:5432` (eventlog/
// bindings/hyperdrive.py). The egress calls `poolerAddress(authority, ownedIds, pooler)`
// before its policy check: the pooler's `host:port` when the authority names one of the
// calling namespace's own configs (the ids its version's `hyperdrive` bindings target),
// else null (not Hyperdrive, or another namespace's config: judged like any address).
// Mirrors `config_of_host` / `pooler_address` in Python; tests/unit/test_hyperdrive.py
// checks that both agree. Nothing here logs: the authority is the tenant's.

const SUFFIX = ".hyperdrive.wdl";
const PORT = "5432";
const ID = /^[0-9a-f]{32}$/;

export function hyperdriveConfigOf(authority) {
  if (typeof authority !== "string") return null;
  const lower = authority.toLowerCase();
  const colon = lower.lastIndexOf(":");
  if (colon < 0 || lower.slice(colon + 1) !== PORT) return null;
  const host = lower.slice(0, colon);
  if (!host.endsWith(SUFFIX)) return null;
  const id = host.slice(0, -SUFFIX.length);
  return ID.test(id) ? id : null;
}

export function poolerAddress(authority, ownedIds, pooler) {
  const id = hyperdriveConfigOf(authority);
  if (id === null || !pooler) return null;
  const owned = ownedIds instanceof Set ? ownedIds.has(id) : Array.from(ownedIds ?? []).includes(id);
  return owned ? pooler : null;
}
