"""Encoding and decoding of envelopes: roundtrips and the undecodable cases."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from eventlog import (
    EVENT_CLASSES,
    AggregateKind,
    Envelope,
    NamespaceCreated,
    UndecodableEvent,
    UnknownEventType,
    UnsupportedSchemaVersion,
    decode,
    encode,
)
from eventlog.ids import new_event_id, uuid7_unix_ms
from tests.eventlog_samples import T0, envelope, every_event

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("event", "pre"), every_event(), ids=lambda x: getattr(x, "TYPE", ""))
def test_every_event_roundtrips(event: object, pre: dict[str, int]) -> None:
    env = envelope(event, pre)  # type: ignore[arg-type]
    assert decode(encode(env)) == env


def test_the_samples_cover_the_whole_catalogue() -> None:
    assert {type(e) for e, _ in every_event()} == set(EVENT_CLASSES)


def test_optional_envelope_fields_survive_and_defaults_are_omitted() -> None:
    cause, correlation = new_event_id(), new_event_id()
    env = Envelope.new(
        NamespaceCreated(namespace="acme"),
        actor="svc:api",
        idempotency_key="req-1",
        causation_id=cause,
        correlation_id=correlation,
    )
    back = decode(encode(env))
    assert (back.causation_id, back.correlation_id, back.idempotency_key) == (
        cause,
        correlation,
        "req-1",
    )
    bare = encode(Envelope.new(NamespaceCreated(namespace="acme"), actor="a"))
    assert b"causation_id" not in bare
    assert b"precondition" not in bare


def test_envelope_exposes_aggregate_and_partition_key() -> None:
    env = envelope(every_event()[1][0])
    assert env.aggregate_kind is AggregateKind.WORKER
    assert env.aggregate_id == "acme/api"
    assert env.partition_key == "acme"
    assert env.occurred_at == T0


def test_garbage_is_undecodable_not_a_crash() -> None:
    for raw in (b"", b"\xc1", b"not msgpack at all", msgspec.msgpack.encode({"type": 1})):
        with pytest.raises(UndecodableEvent):
            decode(raw)


def _wire(**changes: object) -> bytes:
    env = envelope(NamespaceCreated(namespace="acme"))
    builtins = msgspec.to_builtins(env)
    builtins["event_id"] = env.event_id.bytes
    builtins.update(changes)
    return msgspec.msgpack.encode(builtins)


def test_unknown_type_is_reported_by_name() -> None:
    with pytest.raises(UnknownEventType) as info:
        decode(_wire(type="namespace.renamed"))
    assert info.value.event_type == "namespace.renamed"
    assert info.value.code == "unknown_event_type"


def test_a_version_from_the_future_is_refused_not_guessed() -> None:
    with pytest.raises(UnsupportedSchemaVersion) as info:
        decode(_wire(schema_version=9))
    assert (info.value.version, info.value.current) == (9, 1)


def test_envelope_whose_aggregate_disagrees_with_its_payload_is_undecodable() -> None:
    with pytest.raises(UndecodableEvent, match="does not match"):
        decode(_wire(aggregate_id="other"))


def test_payload_of_the_wrong_shape_is_undecodable() -> None:
    with pytest.raises(UndecodableEvent, match="payload"):
        decode(_wire(payload={"namespace": 42}))


def test_event_ids_are_time_ordered_uuid7() -> None:
    ids = [new_event_id() for _ in range(10_000)]
    assert ids == sorted(ids, key=lambda u: u.bytes)
    assert len(set(ids)) == len(ids)
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in ids)
    first_ms = uuid7_unix_ms(ids[0])
    assert 1_700_000_000_000 < first_ms <= uuid7_unix_ms(ids[-1])
