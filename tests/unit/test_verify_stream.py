"""Verify in one pass: the hashed expectation, the streaming comparison, the audit digest."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from eventlog import events as ev
from eventlog.embedded import EmbeddedEventLog
from eventlog.envelope import Envelope
from projections import keys
from projections.audit_store import AuditDigest, AuditStore
from projections.fold import Fold
from projections.memory_store import MemoryProjectionStore
from projections.mirror import Expectation, compare, live_items, value_hash
from projections.projector import Projector
from projections.rebuild import verify_live
from projections.store import digest_of
from tests.factories import LogBuilder, env, sealed, upload

pytestmark = pytest.mark.unit


def _history(rounds: int = 4, seed: int = 3) -> Iterator[Envelope]:
    rnd = random.Random(seed)
    for n in range(3):
        yield env(ev.NamespaceCreated(namespace=f"ns{n}"))
    for r in range(rounds):
        for n in range(3):
            for w in range(3):
                yield env(upload(f"ns{n}", f"w{w}", f"v{r}"))
                yield env(ev.VersionPromoted(namespace=f"ns{n}", worker=f"w{w}",
                                             version_id=f"v{rnd.randrange(r + 1)}"))
                yield env(ev.SecretPut(namespace=f"ns{n}", worker=f"w{w}", name="K",
                                       sealed=sealed()))
            yield env(ev.HostClaimed(pattern=f"h{rnd.randrange(4)}.example.com",
                                     namespace=f"ns{n}", worker="w0"))
            yield env(ev.LeaseAcquired(scope=f"owner/ns{n}", holder=f"r{r}", generation=r + 1,
                                       ttl_ms=10, expires_at=1), expected_generation=r)


def test_add_changes_hashes_the_same_bytes_as_add_row_by_row() -> None:
    builder = LogBuilder()
    records = builder.extend(_history())
    builder.add_raw(1, b"\x00not an event")
    batches = Fold().apply_batch(records + builder.records[len(records):])
    fast, slow = AuditDigest(), AuditDigest()
    for batch in batches.values():
        fast.add_changes(batch.changes)
        for name in ("audit", "deployments", "lease_history", "dead_letters"):
            for row in getattr(batch.changes, name):
                slow.add(name, row)
    assert fast.hexdigest() == slow.hexdigest()
    assert any(b.changes.dead_letters for b in batches.values())


def test_audit_payload_text_is_what_a_sorted_reencoding_of_it_gives() -> None:
    # The audit digest hashes the fold's payload text as is (PostgreSQL's json
    # column gives it back verbatim) and SQLite's decoded read-back re-encoded
    # sorted: the two agree only if the fold's text is already that encoding.
    encode = msgspec.json.Encoder(order="sorted").encode
    rows = [row for batch in Fold().apply_batch(LogBuilder().extend(_history())).values()
            for row in batch.changes.audit]
    assert {row["event_type"] for row in rows} >= {
        "worker.version_uploaded", "worker.version_promoted", "secret.put", "host.claimed",
        "lease.acquired", "namespace.created"}
    for row in rows:
        assert encode(msgspec.json.decode(row["payload"])) == row["payload"].encode()




async def test_compare_gives_the_dump_digest_and_names_every_kind_of_difference() -> None:
    store = MemoryProjectionStore()
    gen = await store.current_generation()
    builder = LogBuilder()
    expected = Expectation()
    for batch in Fold().apply_batch(builder.extend(_history())).values():
        await store.apply(gen, batch.changes, await store.applied(gen))
        expected.add(batch.changes)
    hashes = expected.finish()
    same = await compare(live_items(store, gen), {k: dict(v) for k, v in hashes.items()})
    assert same.ok and same.digest == digest_of(await store.dump(gen))
    assert same.expected_digest == same.digest

    data = store._generations[gen]  # tamper behind the store's back
    data[keys.routes("ns1")]["w1"] = "evil"          # a different value
    del data[keys.workers("ns2")]["w2"]              # a missing field
    data[keys.HOSTS]["extra.example.com"] = "{}"     # a field the replay does not have
    data.pop(keys.versions("ns0", "w0"))             # a missing key
    found = await compare(live_items(store, gen), hashes)
    assert not found.ok and found.expected_digest != found.digest
    assert found.digest == digest_of(await store.dump(gen))
    text = "\n".join(found.differences)
    assert "routes:ns1 [w1]: live=evil replay=<another value>" in text
    assert "workers:ns2 [w2]: live=<missing>" in text
    assert "hosts [extra.example.com]: live={} replay=<missing>" in text
    assert "versions:ns0/w0 [v0]: live=<missing>" in text
    assert value_hash("evil") != hashes[keys.routes("ns1")]["w1"]


async def test_verify_live_in_one_pass_agrees_and_then_names_a_tampered_field(
        tmp_path: Path) -> None:
    async with EmbeddedEventLog(tmp_path / "log.db", partitions=4) as log:
        await log.append_many(list(_history()))
        store = MemoryProjectionStore()
        async with AuditStore(str(tmp_path / "audit.db")) as audit:
            await Projector(log, store, audit).catch_up()
            report = await verify_live(log, store, audit)
            assert report.ok and report.audit_ok is True
            # More events in the log than projected: verify folds only what was applied.
            await log.append(env(ev.NamespaceCreated(namespace="later")))
            assert (await verify_live(log, store, audit)).ok
        gen = await store.current_generation()
        report = await verify_live(log, store)
        assert report.ok and report.digest == await store.digest(gen)
        assert report.digest == report.expected_digest and report.audit_ok is None
        store._generations[gen][keys.routes("ns0")]["w0"] = "evil"
        report = await verify_live(log, store)
        assert not report.ok
        assert any("routes:ns0 [w0]" in d and "evil" in d for d in report.differences)


async def test_compare_names_a_missing_field_beside_an_extra_one() -> None:
    async def live() -> AsyncIterator[tuple[str, dict[str, str]]]:
        yield "k", {"a": "1", "x": "extra"}

    found = await compare(live(), {"k": {"a": value_hash("1"), "b": value_hash("2")}})
    assert found.differences == ["k [b]: live=<missing> replay=<a value>",
                                 "k [x]: live=extra replay=<missing>"]
