"""Wire encoding of envelopes: msgpack via msgspec, decoded in two typed passes.

The envelope is decoded first with the payload left as raw bytes, so its
`type` and `schema_version` can choose the payload decoder (or the upcaster
chain) before the payload is touched. Current-version payloads go straight to
a typed decoder; older ones are decoded to builtins, upcast and converted.
"""

from __future__ import annotations

import uuid

import msgspec

from eventlog.aggregates import AggregateKind
from eventlog.envelope import NO_PRECONDITION, Envelope, Precondition
from eventlog.errors import UndecodableEvent, UnknownEventType, UnsupportedSchemaVersion
from eventlog.events import EVENT_TYPES, Event
from eventlog.upcasting import DEFAULT_CHAIN, UpcastContext, UpcasterChain


class _WireEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    event_id: uuid.UUID
    type: str
    schema_version: int
    aggregate_kind: AggregateKind
    aggregate_id: str
    precondition: Precondition = NO_PRECONDITION
    actor: str
    idempotency_key: str | None = None
    causation_id: uuid.UUID | None = None
    correlation_id: uuid.UUID | None = None
    occurred_at: int
    payload: msgspec.Raw


class Codec:
    """Encoder and decoders; one instance can be shared by every task of a process."""

    def __init__(self, upcasters: UpcasterChain = DEFAULT_CHAIN) -> None:
        self._upcasters = upcasters
        self._encoder = msgspec.msgpack.Encoder(uuid_format="bytes")
        self._wire = msgspec.msgpack.Decoder(_WireEnvelope)
        self._untyped = msgspec.msgpack.Decoder()
        self._payload: dict[str, tuple[int, msgspec.msgpack.Decoder[Event]]] = {
            name: (cls.SCHEMA_VERSION, msgspec.msgpack.Decoder(cls))
            for name, cls in EVENT_TYPES.items()
        }

    def encode(self, envelope: Envelope) -> bytes:
        return self._encoder.encode(envelope)

    def decode(self, raw: bytes) -> Envelope:
        """Decode one record; raises UndecodableEvent (or a subclass) for bad bytes."""
        try:
            wire = self._wire.decode(raw)
        except msgspec.DecodeError as exc:
            raise UndecodableEvent(f"envelope: {exc}") from exc
        entry = self._payload.get(wire.type)
        if entry is None:
            raise UnknownEventType(wire.type)
        current, decoder = entry
        try:
            if wire.schema_version == current:
                payload = decoder.decode(wire.payload)
            else:
                payload = self._upcast(wire, current)
        except msgspec.DecodeError as exc:
            raise UndecodableEvent(f"{wire.type} payload: {exc}") from exc
        if payload.aggregate() != (wire.aggregate_kind, wire.aggregate_id):
            raise UndecodableEvent(
                f"{wire.type} envelope aggregate {wire.aggregate_kind}:{wire.aggregate_id}"
                " does not match its payload"
            )
        return Envelope(
            event_id=wire.event_id,
            type=wire.type,
            schema_version=current,
            aggregate_kind=wire.aggregate_kind,
            aggregate_id=wire.aggregate_id,
            precondition=wire.precondition,
            actor=wire.actor,
            idempotency_key=wire.idempotency_key,
            causation_id=wire.causation_id,
            correlation_id=wire.correlation_id,
            occurred_at=wire.occurred_at,
            payload=payload,
        )

    def _upcast(self, wire: _WireEnvelope, current: int) -> Event:
        if not self._upcasters.can_upcast(wire.type, wire.schema_version):
            raise UnsupportedSchemaVersion(wire.type, wire.schema_version, current)
        old = self._untyped.decode(wire.payload)
        if not isinstance(old, dict):
            raise UndecodableEvent(f"{wire.type} payload is not a map")
        context = UpcastContext(event_type=wire.type, occurred_at=wire.occurred_at)
        try:
            upcast = self._upcasters.upcast(old, wire.schema_version, context)
        except (KeyError, TypeError, ValueError) as exc:
            raise UndecodableEvent(
                f"{wire.type} v{wire.schema_version} could not be upcast: {exc!r}"
            ) from exc
        return msgspec.convert(upcast, EVENT_TYPES[wire.type])


DEFAULT_CODEC = Codec()


def encode(envelope: Envelope) -> bytes:
    return DEFAULT_CODEC.encode(envelope)


def decode(raw: bytes) -> Envelope:
    return DEFAULT_CODEC.decode(raw)
