"""Stored records of older schema versions keep decoding as the current version."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from eventlog import (
    CURRENT_VERSIONS,
    DEFAULT_CHAIN,
    LeaseAcquired,
    TokenIssued,
    UpcasterChain,
    WorkerVersionUploaded,
    decode,
    encode,
)

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "events"
RECORDS = sorted(FIXTURES.glob("*.msgpack"))


def test_fixtures_exist_for_every_type_at_its_current_version_and_every_old_one() -> None:
    # Stems are `<type>[-<variant>].v<version>`.
    stored: set[tuple[str, int]] = set()
    for path in RECORDS:
        base, _, digits = path.name.removesuffix(".msgpack").rpartition(".v")
        stored.add((base.partition("-")[0], int(digits)))
    for event_type, current in CURRENT_VERSIONS.items():
        for version in range(1, current + 1):
            assert (event_type, version) in stored


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: p.name)
def test_stored_record_decodes_to_its_expected_current_form(path: Path) -> None:
    expected_path = path.with_name(path.name.replace(".msgpack", ".expected.json"))
    env = decode(path.read_bytes())
    assert json.loads(msgspec.json.encode(env)) == json.loads(expected_path.read_text())
    assert env.schema_version == CURRENT_VERSIONS[env.type]


@pytest.mark.parametrize("path", [p for p in RECORDS if p.name.endswith(".v1.msgpack")], ids=str)
def test_upcast_records_are_valid_current_events(path: Path) -> None:
    env = decode(path.read_bytes())
    env.validate()
    assert decode(encode(env)) == env


def test_worker_version_uploaded_v1_digest_and_crons_are_carried_over() -> None:
    env = decode((FIXTURES / "worker.version_uploaded.v1.msgpack").read_bytes())
    assert isinstance(env.payload, WorkerVersionUploaded)
    assert len(env.payload.bundle_sha256) == 64
    assert not env.payload.bundle_sha256.startswith("sha256:")
    assert env.payload.cron_triggers == ("*/10 * * * *",)
    assert env.payload.compatibility_flags == ()
    assert env.precondition.expected_version == 4


def test_lease_acquired_v1_ttl_seconds_become_milliseconds() -> None:
    env = decode((FIXTURES / "lease.acquired.v1.msgpack").read_bytes())
    assert isinstance(env.payload, LeaseAcquired)
    assert env.payload.ttl_ms == 15_000
    assert env.payload.generation == 3


def test_token_issued_v1_roles_and_namespace_map_to_v2() -> None:
    write = decode((FIXTURES / "token.issued-write.v1.msgpack").read_bytes()).payload
    admin = decode((FIXTURES / "token.issued-admin.v1.msgpack").read_bytes()).payload
    assert isinstance(write, TokenIssued) and isinstance(admin, TokenIssued)
    assert (write.role, write.namespaces) == ("deployer", ("acme",))
    assert (admin.role, admin.namespaces) == ("admin", ())


def test_the_default_chain_has_no_gaps() -> None:
    assert DEFAULT_CHAIN.gaps() == []


def test_chain_refuses_impossible_registrations() -> None:
    chain = UpcasterChain({"x.happened": 3})
    with pytest.raises(ValueError):
        chain.register("y.happened", 1, lambda p, c: p)
    with pytest.raises(ValueError):
        chain.register("x.happened", 3, lambda p, c: p)
    chain.register("x.happened", 1, lambda p, c: p)
    with pytest.raises(ValueError):
        chain.register("x.happened", 1, lambda p, c: p)
    assert chain.gaps() == [("x.happened", 2)]
    assert not chain.can_upcast("x.happened", 1)
    assert chain.can_upcast("x.happened", 2) is False
    assert chain.can_upcast("x.happened", 3)
