"""The fold's verdicts and effects, on records built in memory."""

from __future__ import annotations

import json
import random
from typing import Any

from eventlog import events as ev
from eventlog.partitioning import partition_for
from eventlog.port import Record
from projections import keys
from projections.changes import Changes
from projections.fold import VERDICT_WINDOW, Fold, Verdict
from projections.memory_store import MemoryProjectionStore
from projections.store import digest_of
from tests.factories import T0, LogBuilder, env, sealed, upload


class Harness:
    def __init__(self) -> None:
        self.log = LogBuilder()
        self.fold = Fold()
        self.state: dict[str, dict[str, str]] = {}

    def send(self, payload: Any, **kw: Any) -> Verdict:
        record = self.log.add(env(payload, **kw))
        out = Changes()
        verdict = self.fold.apply(record, out)
        assert verdict is not None
        for key in out.dropped:
            self.state.pop(key, None)
        for key, fields in out.fields.items():
            target = self.state.setdefault(key, {})
            for name, value in fields.items():
                if value is None:
                    target.pop(name, None)
                else:
                    target[name] = value
        return verdict

    def get(self, key: str, field: str) -> dict[str, object] | str | None:
        value = self.state.get(key, {}).get(field)
        if value is None:
            return None
        try:
            return json.loads(value)  # type: ignore[no-any-return]
        except ValueError:
            return value


def accepted(v: Verdict) -> bool:
    return v.accepted and v.code is None


def test_namespace_created_once() -> None:
    h = Harness()
    assert accepted(h.send(ev.NamespaceCreated(namespace="acme")))
    again = h.send(ev.NamespaceCreated(namespace="acme"))
    assert (again.accepted, again.code) == (False, "namespace_exists")
    assert h.get(keys.NAMESPACES, "acme") == {"created_at": T0, "description": "",
                                               "version": 1}


def test_upload_needs_namespace_and_new_version() -> None:
    h = Harness()
    assert h.send(upload("acme", "api", "v1")).code == "namespace_missing"
    h.send(ev.NamespaceCreated(namespace="acme"))
    assert accepted(h.send(upload("acme", "api", "v1")))
    assert h.send(upload("acme", "api", "v1")).code == "version_exists"
    meta = h.get(keys.versions("acme", "api"), "v1")
    assert isinstance(meta, dict) and meta["main_module"] == "index.js"
    assert h.get(keys.routes("acme"), "api") is None  # uploaded, not promoted


def test_racing_promotes_one_wins_by_expected_version() -> None:
    h = Harness()
    h.send(ev.NamespaceCreated(namespace="acme"))
    h.send(upload("acme", "api", "v1"))
    h.send(upload("acme", "api", "v2"))
    first = h.send(ev.VersionPromoted(namespace="acme", worker="api", version_id="v1"),
                   expected_version=2)
    second = h.send(ev.VersionPromoted(namespace="acme", worker="api", version_id="v2"),
                    expected_version=2)
    assert accepted(first)
    assert (second.accepted, second.code) == (False, "stale_version")
    assert h.get(keys.routes("acme"), "api") == "v1"


def test_promote_rollback_delete_purge_lifecycle() -> None:
    h = Harness()
    h.send(ev.NamespaceCreated(namespace="acme"))
    h.send(upload("acme", "api", "v1", crons=("*/5 * * * *",)))
    h.send(upload("acme", "api", "v2"))
    assert accepted(h.send(ev.VersionPromoted(namespace="acme", worker="api", version_id="v1")))
    assert h.get(keys.CRON, "acme/api") == {"version_id": "v1", "crons": ["*/5 * * * *"]}
    assert accepted(h.send(ev.VersionPromoted(namespace="acme", worker="api", version_id="v2")))
    assert h.get(keys.CRON, "acme/api") is None  # v2 has no crons
    worker = h.get(keys.workers("acme"), "api")
    assert isinstance(worker, dict) and worker["previous_version"] == "v1"
    assert h.send(ev.VersionPromoted(namespace="acme", worker="api",
                                     version_id="v2")).code == "already_active"
    assert accepted(h.send(ev.WorkerRolledBack(namespace="acme", worker="api",
                                               version_id="v1", reason="bad deploy")))
    assert h.get(keys.routes("acme"), "api") == "v1"
    assert h.send(ev.VersionDeleted(namespace="acme", worker="api",
                                    version_id="v1")).code == "version_active"
    assert accepted(h.send(ev.VersionDeleted(namespace="acme", worker="api", version_id="v2")))
    assert h.send(ev.VersionPromoted(namespace="acme", worker="api",
                                     version_id="v2")).code == "version_deleted"
    assert h.send(ev.WorkerPurged(namespace="acme", worker="api")).code == "worker_not_deleted"
    assert accepted(h.send(ev.WorkerDeleted(namespace="acme", worker="api")))
    assert h.get(keys.routes("acme"), "api") is None
    assert h.get(keys.CRON, "acme/api") is None
    assert h.send(upload("acme", "api", "v3")).code == "worker_deleted"
    assert accepted(h.send(ev.WorkerPurged(namespace="acme", worker="api")))
    assert keys.versions("acme", "api") not in h.state
    assert h.get(keys.workers("acme"), "api") is None
    # The name is free again after a purge.
    assert accepted(h.send(upload("acme", "api", "v1")))


def test_secrets_scoped_and_ciphertext_only() -> None:
    h = Harness()
    h.send(ev.NamespaceCreated(namespace="acme"))
    assert h.send(ev.SecretPut(namespace="acme", worker="api", name="TOKEN",
                               sealed=sealed())).code == "worker_missing"
    h.send(upload("acme", "api", "v1"))
    assert accepted(h.send(ev.SecretPut(namespace="acme", worker="api", name="TOKEN",
                                        sealed=sealed())))
    assert accepted(h.send(ev.SecretPut(namespace="acme", name="SHARED", sealed=sealed())))
    stored = h.get(keys.secrets("acme", "api"), "TOKEN")
    assert isinstance(stored, dict) and stored["key_id"] == "k1"
    assert h.get(keys.secrets("acme", None), "SHARED") is not None
    assert h.send(ev.SecretDeleted(namespace="acme", worker="api",
                                   name="NOPE")).code == "secret_missing"
    assert accepted(h.send(ev.SecretDeleted(namespace="acme", worker="api", name="TOKEN")))
    assert h.get(keys.secrets("acme", "api"), "TOKEN") is None


def test_host_claims_are_exclusive_per_namespace() -> None:
    h = Harness()
    claim = ev.HostClaimed(pattern="shop.example.com", namespace="acme", worker="web")
    assert accepted(h.send(claim))
    other = h.send(ev.HostClaimed(pattern="shop.example.com", namespace="evil", worker="x"))
    assert (other.accepted, other.code) == (False, "host_claimed")
    assert h.send(ev.HostReleased(pattern="shop.example.com",
                                  namespace="evil")).code == "host_claimed"
    host = h.get(keys.HOSTS, "shop.example.com")
    assert isinstance(host, dict) and host["namespace"] == "acme" and host["worker"] == "web"
    assert accepted(h.send(ev.HostReleased(pattern="shop.example.com", namespace="acme")))
    assert accepted(h.send(ev.HostClaimed(pattern="shop.example.com", namespace="evil",
                                          worker="x")))


def test_a_host_belongs_to_one_namespace_with_every_path_under_it() -> None:
    h = Harness()
    assert accepted(h.send(ev.HostClaimed(pattern="vault.victim.test", namespace="victim",
                                          worker="vault")))
    for pattern in ("vault.victim.test/", "vault.victim.test/login", "vault.victim.test/a/b"):
        for match in ("exact", "prefix"):
            refused = h.send(ev.HostClaimed(pattern=pattern, namespace="evil", match=match,
                                            worker="x"))
            assert (refused.accepted, refused.code) == (False, "host_claimed"), pattern
            assert "belongs to another namespace" in refused.message
            assert h.get(keys.HOSTS, pattern) is None
    # The owner holds as many patterns of its host as it likes.
    assert accepted(h.send(ev.HostClaimed(pattern="vault.victim.test/login",
                                          namespace="victim", worker="login")))
    assert h.send(ev.HostReleased(pattern="vault.victim.test/login",
                                  namespace="evil")).code == "host_claimed"
    assert accepted(h.send(ev.HostReleased(pattern="vault.victim.test", namespace="victim")))
    # One pattern left: the host is still the victim's.
    assert h.send(ev.HostClaimed(pattern="vault.victim.test", namespace="evil",
                                 worker="x")).code == "host_claimed"
    assert accepted(h.send(ev.HostReleased(pattern="vault.victim.test/login",
                                           namespace="victim")))
    assert h.get(keys.HOST_OWNERS, "vault.victim.test") is None  # the last release gives it up
    assert accepted(h.send(ev.HostClaimed(pattern="vault.victim.test/x", namespace="evil",
                                          worker="x")))
    owner = h.get(keys.HOST_OWNERS, "vault.victim.test")
    assert isinstance(owner, dict) and (owner["namespace"], owner["verified"]) == ("evil", False)


def test_every_pattern_of_a_host_is_on_the_hosts_partition() -> None:
    placed = {partition_for(env(ev.HostClaimed(pattern=p, namespace="a")).partition_key, 64)
              for p in ("shop.example.test", "shop.example.test/", "shop.example.test/admin",
                        "shop.example.test/a/b/c")}
    assert len(placed) == 1
    proof = env(ev.HostVerified(host="shop.example.test", namespace="a", record="r",
                                challenge="c"))
    assert partition_for(proof.partition_key, 64) in placed


def test_a_dns_proof_outranks_claims_without_one() -> None:
    h = Harness()
    assert accepted(h.send(ev.HostClaimed(pattern="squat.victim.test", namespace="evil",
                                          worker="x")))
    assert accepted(h.send(ev.HostClaimed(pattern="squat.victim.test/a", namespace="evil",
                                          worker="x")))
    squat = h.get(keys.HOSTS, "squat.victim.test")
    assert isinstance(squat, dict) and squat["verified"] is False
    assert accepted(h.send(ev.HostVerified(host="squat.victim.test", namespace="victim",
                                           record="_wdl-challenge.squat.victim.test",
                                           challenge="c")))
    assert h.get(keys.HOSTS, "squat.victim.test") is None
    assert h.get(keys.HOSTS, "squat.victim.test/a") is None
    owner = h.get(keys.HOST_OWNERS, "squat.victim.test")  # proven, no claim yet
    assert isinstance(owner, dict) and (owner["namespace"], owner["verified"]) == (
        "victim", True)
    assert h.send(ev.HostClaimed(pattern="squat.victim.test/a", namespace="evil",
                                 worker="x")).code == "host_claimed"
    assert accepted(h.send(ev.HostClaimed(pattern="squat.victim.test", namespace="victim",
                                          worker="vault")))
    owned = h.get(keys.HOSTS, "squat.victim.test")
    assert isinstance(owned, dict) and (owned["namespace"], owned["verified"]) == (
        "victim", True)
    # A proof by the owner marks the patterns it holds already.
    h2 = Harness()
    h2.send(ev.HostClaimed(pattern="a.example.test", namespace="acme", worker="w"))
    h2.send(ev.HostVerified(host="a.example.test", namespace="acme", record="r", challenge="c"))
    doc = h2.get(keys.HOSTS, "a.example.test")
    assert isinstance(doc, dict) and doc["verified"] is True and doc["worker"] == "w"


def test_v1_claims_keyed_by_their_pattern_keep_their_verdicts_and_route_nothing() -> None:
    h = Harness()
    assert accepted(h.send(ev.HostClaimed(pattern="vault.victim.test", namespace="victim")))
    legacy = ev.HostClaimed(pattern="vault.victim.test/login", namespace="evil",
                            keyed_by_pattern=True)
    assert env(legacy).aggregate_id == "vault.victim.test/login"
    assert accepted(h.send(legacy))  # as v1 judged it
    assert h.get(keys.HOSTS, "vault.victim.test/login") is None  # but it routes nothing
    # The v1 rule still holds among v1 events: one namespace per identical pattern.
    assert h.send(ev.HostClaimed(pattern="vault.victim.test/login", namespace="other",
                                 keyed_by_pattern=True)).code == "host_claimed"
    assert accepted(h.send(ev.HostReleased(pattern="vault.victim.test/login", namespace="evil",
                                           keyed_by_pattern=True),
                           expected_version=1))
    # Its namespace re-claims under the new key: the host's owner decides.
    assert h.send(ev.HostClaimed(pattern="vault.victim.test/login",
                                 namespace="evil")).code == "host_claimed"


def test_host_verdicts_replay_identically_and_a_host_has_one_namespace() -> None:
    rnd = random.Random(7)
    hosts = ["a.example.test", "b.example.test", "c.example.test"]
    paths = ["", "/", "/x", "/x/y"]
    events: list[Any] = []
    for _ in range(400):
        host, ns = rnd.choice(hosts), rnd.choice(["n1", "n2", "n3"])
        pattern = host + rnd.choice(paths)
        roll = rnd.random()
        if roll < 0.55:
            events.append(ev.HostClaimed(pattern=pattern, namespace=ns,
                                         match=rnd.choice(["exact", "prefix"]), worker="w"))
        elif roll < 0.9:
            events.append(ev.HostReleased(pattern=pattern, namespace=ns))
        else:
            events.append(ev.HostVerified(host=host, namespace=ns, record="r", challenge="c"))
    runs = []
    for _ in range(2):
        h = Harness()
        verdicts = [(v.accepted, v.code) for v in (h.send(e) for e in events)]
        runs.append((verdicts, h.state.get(keys.HOSTS, {})))
        owners: dict[str, set[str]] = {}
        for pattern, raw in h.state.get(keys.HOSTS, {}).items():
            owners.setdefault(pattern.partition("/")[0], set()).add(json.loads(raw)["namespace"])
        assert all(len(namespaces) == 1 for namespaces in owners.values()), owners
    assert runs[0] == runs[1]
    assert any(not accepted for accepted, _ in runs[0][0])


def _lease(kind: type, gen: int, expected: int, holder: str, at: int,
           **kw: object) -> tuple[Any, dict[str, Any]]:
    fields: dict[str, object] = {"scope": "cron/acme", "holder": holder, "generation": gen}
    if kind is not ev.LeaseReleased:
        fields.update(ttl_ms=10_000, expires_at=at + 10_000)
    fields.update(kw)
    return kind(**fields), {"expected_generation": expected, "at": at}


def test_lease_generations_fence_stale_holders() -> None:
    h = Harness()
    p, kw = _lease(ev.LeaseAcquired, 1, 0, "a", T0)
    assert accepted(h.send(p, **kw))
    p, kw = _lease(ev.LeaseAcquired, 2, 1, "b", T0 + 1000)
    assert h.send(p, **kw).code == "lease_held"
    p, kw = _lease(ev.LeaseRenewed, 1, 1, "a", T0 + 5000)
    assert accepted(h.send(p, **kw))
    p, kw = _lease(ev.LeaseTakenOver, 2, 1, "op", T0 + 6000, previous_holder="a")
    assert accepted(h.send(p, **kw))
    # The old holder's renew carries its old generation: refused, fails closed.
    p, kw = _lease(ev.LeaseRenewed, 1, 1, "a", T0 + 7000)
    assert h.send(p, **kw).code == "stale_generation"
    lease = h.get(keys.LEASES, "cron/acme")
    assert isinstance(lease, dict) and lease["holder"] == "op" and lease["generation"] == 2
    # Expiry is judged by the event's own time: after 16s + the lease is free.
    p, kw = _lease(ev.LeaseAcquired, 3, 2, "b", T0 + 17_000)
    assert accepted(h.send(p, **kw))
    p, kw = _lease(ev.LeaseRenewed, 2, 2, "op", T0 + 18_000)
    assert h.send(p, **kw).code == "stale_generation"


def test_token_issue_and_revoke() -> None:
    h = Harness()
    issue = ev.TokenIssued(token_id="t1", token_sha256=b"\x01" * 32, role="deployer",
                           namespaces=("acme",))
    assert accepted(h.send(issue))
    assert h.send(issue).code == "token_exists"
    assert h.get(keys.TOKEN_HASHES, ("01" * 32)) == "t1"
    assert accepted(h.send(ev.TokenRevoked(token_id="t1")))
    assert h.get(keys.TOKEN_HASHES, ("01" * 32)) is None
    assert h.send(ev.TokenRevoked(token_id="t1")).code == "token_revoked"


def test_duplicate_event_id_keeps_first_verdict() -> None:
    h = Harness()
    e = env(ev.NamespaceCreated(namespace="acme"))
    r1, r2 = h.log.add(e), h.log.add(e)
    out = Changes()
    v1, v2 = h.fold.apply(r1, out), h.fold.apply(r2, out)
    assert v1 is not None and v1.accepted
    assert v2 is not None and v2.code == "duplicate_event"
    stored = json.loads(out.fields[keys.verdicts(r1.position.partition)][str(e.event_id)] or "")
    assert stored["accepted"] is True and stored["offset"] == r1.position.offset
    assert [row["accepted"] for row in out.audit] == [True, False]


def test_idempotency_key_reuse_is_refused_with_a_pointer() -> None:
    # Keys are scoped to the partition of the aggregate: a retry targets the same one.
    h = Harness()
    h.send(ev.NamespaceCreated(namespace="acme"))
    h.send(upload("acme", "api", "v1"))
    promote = ev.VersionPromoted(namespace="acme", worker="api", version_id="v1")
    first = h.send(promote, idempotency_key="k-1")
    h.send(upload("acme", "api", "v2"))
    again = h.send(ev.VersionPromoted(namespace="acme", worker="api", version_id="v2"),
                   idempotency_key="k-1")
    assert first.accepted
    assert again.code == "duplicate_idempotency_key" and first.event_id in again.message
    assert h.get(keys.routes("acme"), "api") == "v1"
    assert h.get(keys.idempotency(again.partition), "k-1") == first.event_id


def test_undecodable_record_is_dead_lettered_and_fold_continues() -> None:
    h = Harness()
    bad = h.log.add_raw(0, b"\xff\x00not msgpack")
    out = Changes()
    assert h.fold.apply(bad, out) is None
    assert out.dead_letters[0]["log_offset"] == 0 and out.dead_letters[0]["raw"] == bad.raw
    assert out.positions == {0: 1}
    # Later events still fold.
    ok = h.send(ev.NamespaceCreated(namespace="acme"))
    assert ok.accepted


def _history(seed: int) -> LogBuilder:
    rnd = random.Random(seed)
    lb = LogBuilder(partitions=4)
    for n in range(6):
        ns = f"ns{n}"
        lb.add(env(ev.NamespaceCreated(namespace=ns)))
        for w in range(3):
            for v in range(3):
                lb.add(env(upload(ns, f"w{w}", f"v{v}", crons=("0 * * * *",) if v == 1 else ())))
                lb.add(env(ev.VersionPromoted(namespace=ns, worker=f"w{w}",
                                              version_id=f"v{rnd.randrange(3)}")))
        lb.add(env(ev.HostClaimed(pattern=f"h{rnd.randrange(4)}.example", namespace=ns,
                                  worker="w0")))
    return lb


async def _dump_of(records: list[Record]) -> dict[str, dict[str, str]]:
    fold, store = Fold(), MemoryProjectionStore()
    gen = await store.current_generation()
    for batch in fold.apply_batch(records).values():
        await store.apply(gen, batch.changes, await store.applied(gen))
    return await store.dump(gen)


async def test_fold_is_deterministic_whatever_the_partition_interleaving() -> None:
    lb = _history(7)
    in_order = await _dump_of(lb.records)
    by_partition = sorted(lb.records, key=lambda r: (-r.position.partition, r.position.offset))
    shuffled = await _dump_of(by_partition)
    assert digest_of(in_order) == digest_of(shuffled)
    assert in_order[keys.APPLIED] == {str(p): str(n) for p, n in lb._next.items()}


def test_verdict_window_is_bounded_and_deterministic() -> None:
    lb = LogBuilder(partitions=1)
    fold, out = Fold(), Changes()
    for i in range(VERDICT_WINDOW + 5):
        fold.apply(lb.add(env(ev.TokenIssued(token_id=f"t{i}", token_sha256=bytes(32),
                                             role="admin"))), out)
    verdicts = {k: v for k, v in out.fields[keys.verdicts(0)].items() if v is not None}
    assert len(verdicts) == VERDICT_WINDOW
    assert partition_for("t0", 1) == 0


def _cron(kind: type, holder: str, gen: int, slot: int, **kw: Any) -> Any:
    return kind(scope="scheduler", holder=holder, generation=gen, namespace="acme",
                worker="api", version_id="v1", cron="* * * * *", slot_ms=slot, **kw)


def test_cron_slots_are_claimed_once_and_fenced_by_the_lease() -> None:
    h = Harness()
    grant = ev.LeaseAcquired(scope="scheduler", holder="a", generation=1, ttl_ms=10_000,
                             expires_at=T0 + 10_000)
    assert accepted(h.send(grant, expected_generation=0, at=T0))
    slot = T0 + 60_000
    claim = _cron(ev.CronSlotClaimed, "a", 1, slot)
    assert accepted(h.send(claim, expected_generation=1, at=T0 + 100))
    again = h.send(_cron(ev.CronSlotClaimed, "a", 1, slot), expected_generation=1, at=T0 + 200)
    assert again.code == "slot_already_claimed"
    done = _cron(ev.CronRunCompleted, "a", 1, slot, status="ok", duration_ms=7)
    assert accepted(h.send(done, expected_generation=1, at=T0 + 300))
    run = h.get(keys.cron_runs("acme", "api"), f"{slot}|* * * * *")
    assert isinstance(run, dict) and run["status"] == "ok" and run["duration_ms"] == 7
    # Operator takeover: the old holder's claims are refused from now on (fails closed).
    takeover = ev.LeaseTakenOver(scope="scheduler", holder="b", generation=2, ttl_ms=10_000,
                                 expires_at=T0 + 20_000, previous_holder="a")
    assert accepted(h.send(takeover, expected_generation=1, at=T0 + 400))
    stale = h.send(_cron(ev.CronSlotClaimed, "a", 1, slot + 60_000), expected_generation=1,
                   at=T0 + 500)
    assert stale.code == "stale_generation"
    fresh = h.send(_cron(ev.CronSlotClaimed, "b", 2, slot + 60_000), expected_generation=2,
                   at=T0 + 600)
    assert accepted(fresh)
    # An expired holder cannot claim either, even with the right generation.
    late = h.send(_cron(ev.CronSlotClaimed, "b", 2, slot + 120_000), expected_generation=2,
                  at=T0 + 25_000)
    assert late.code == "lease_expired"


def test_verdict_json_fast_path_equals_the_sorted_encoder() -> None:
    from projections.fold import dumps

    rnd = random.Random(5)
    for _ in range(200):
        accepted = rnd.random() < 0.7
        verdict = Verdict("e", accepted, None if accepted else "stale_version",
                          "accepted" if accepted else 'a "quoted" \\ reason', rnd.randrange(64),
                          rnd.randrange(10**12), rnd.randrange(10**6))
        assert verdict.to_json() == dumps({
            "accepted": verdict.accepted, "code": verdict.code, "message": verdict.message,
            "partition": verdict.partition, "offset": verdict.offset,
            "aggregate_version": verdict.aggregate_version,
        })
