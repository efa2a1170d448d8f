"""One contract for the audit store on SQLite (embedded) and PostgreSQL, plus migrations."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select, update

from eventlog import events as ev
from projections.audit_db import make_sync_engine
from projections.audit_models import AuditEvent
from projections.audit_store import AuditDigest, AuditStore, run_migrations
from projections.changes import Changes
from projections.fold import Fold
from projections.store import GenerationMissing, StalePosition
from tests.factories import LogBuilder, env, upload


@pytest.fixture(params=["sqlite", "postgres"])
def audit_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.sqlite'}"
    return str(request.getfixturevalue("fresh_database"))


@pytest.fixture
async def audit(audit_url: str) -> AsyncIterator[AuditStore]:
    async with AuditStore(audit_url) as store:
        yield store


def _folded() -> tuple[LogBuilder, Changes]:
    lb = LogBuilder(partitions=2)
    lb.add(env(ev.NamespaceCreated(namespace="acme")))
    lb.add(env(upload("acme", "api", "v1")))
    lb.add(env(ev.VersionPromoted(namespace="acme", worker="api", version_id="v1")))
    lb.add(env(ev.VersionPromoted(namespace="acme", worker="api", version_id="v1")))
    lb.add(env(ev.LeaseAcquired(scope="s", holder="h", generation=1, ttl_ms=5, expires_at=10),
               expected_generation=0))
    lb.add_raw(1, b"\x00garbage")
    out = Changes()
    for batch in Fold().apply_batch(lb.records).values():
        out.merge(batch.changes)
    return lb, out


async def test_rows_and_positions_in_one_transaction(audit: AuditStore) -> None:
    gen = await audit.current_generation()
    _, out = _folded()
    await audit.apply(gen, out, {})
    assert await audit.applied(gen) == out.positions
    total, distinct = await audit.count_positions(gen)
    assert total == distinct == len(out.audit)
    # Replaying the same batch from a stale position is refused, nothing doubles.
    with pytest.raises(StalePosition):
        await audit.apply(gen, out, {})
    assert await audit.count_positions(gen) == (total, distinct)


async def test_digest_matches_the_fold_output(audit: AuditStore) -> None:
    gen = await audit.current_generation()
    _, out = _folded()
    await audit.apply(gen, out, {})
    expected = AuditDigest()
    expected.add_changes(out)
    expected.positions(out.positions)
    assert await audit.digest(gen) == expected.hexdigest()
    assert any(row["code"] for row in out.dead_letters)

    # A payload changed behind the store's back changes the digest.
    async with audit.connect(gen) as conn:
        table = AuditEvent.__table__
        first = await conn.scalar(select(func.min(table.c.id)))
        await conn.execute(update(AuditEvent).where(table.c.id == first)
                           .values(payload={"tampered": True}))
        await conn.commit()
    assert await audit.digest(gen) != expected.hexdigest()


async def test_shadow_generation_and_switch(audit: AuditStore) -> None:
    live = await audit.current_generation()
    _, out = _folded()
    await audit.apply(live, out, {})
    shadow = await audit.new_generation()
    assert await audit.applied(shadow) == {}
    assert not await audit.switch(shadow, not_behind=live)
    await audit.apply(shadow, out, {})
    assert await audit.switch(shadow, not_behind=live)
    assert await audit.current_generation() == shadow
    assert await audit.digest(shadow) == await audit.digest(live)
    await audit.drop_generation(live)
    assert live not in await audit.generations()
    with pytest.raises(GenerationMissing):
        await audit.apply(live, out, {})


def test_alembic_upgrade_from_empty_and_downgrade(audit_url: str) -> None:
    engine = make_sync_engine(audit_url)
    try:
        with engine.begin() as conn:
            run_migrations(conn)
        with engine.connect() as conn:
            insp = inspect(conn)
            assert insp.has_table("wdl_audit_current")
            assert insp.has_table("audit_events", schema="audit_g1")
            indexes = {ix["name"] for ix in insp.get_indexes("audit_events", schema="audit_g1")}
            assert "ix_audit_events_ns_worker_time" in indexes
        with engine.begin() as conn:
            run_migrations(conn, revision="base", downgrade=True)
        with engine.connect() as conn:
            insp = inspect(conn)
            assert not insp.has_table("wdl_audit_current")
            assert not insp.has_table("audit_events", schema="audit_g1")
        with engine.begin() as conn:  # and back up again
            run_migrations(conn)
        with engine.connect() as conn:
            assert inspect(conn).has_table("audit_events", schema="audit_g1")
    finally:
        engine.dispose()
    assert uuid.UUID(int=0)
