"""The envelope every event travels in: identity, causality and its precondition."""

from __future__ import annotations

import uuid
import weakref

import msgspec

from eventlog import validation as v
from eventlog.aggregates import AggregateKind, partition_key
from eventlog.errors import InvalidEvent
from eventlog.events import EVENT_TYPES, Event
from eventlog.ids import new_event_id, now_ms
from eventlog.precondition import NO_PRECONDITION, Precondition

__all__ = ["NO_PRECONDITION", "Envelope", "Precondition"]


class Envelope(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, weakref=True):
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
    payload: Event

    @classmethod
    def new(
        cls,
        payload: Event,
        *,
        actor: str,
        expected_version: int | None = None,
        expected_generation: int | None = None,
        idempotency_key: str | None = None,
        causation_id: uuid.UUID | None = None,
        correlation_id: uuid.UUID | None = None,
        event_id: uuid.UUID | None = None,
        occurred_at: int | None = None,
    ) -> Envelope:
        """Wrap and validate an event; raises InvalidEvent for bad input."""
        kind, aggregate_id = payload.aggregate()
        envelope = cls(
            event_id=event_id if event_id is not None else new_event_id(),
            type=payload.TYPE,
            schema_version=payload.SCHEMA_VERSION,
            aggregate_kind=kind,
            aggregate_id=aggregate_id,
            precondition=(
                NO_PRECONDITION
                if expected_version is None and expected_generation is None
                else Precondition(
                    expected_version=expected_version, expected_generation=expected_generation
                )
            ),
            actor=actor,
            idempotency_key=idempotency_key,
            causation_id=causation_id,
            correlation_id=correlation_id,
            occurred_at=occurred_at if occurred_at is not None else now_ms(),
            payload=payload,
        )
        envelope.validate()
        _remember_validated(envelope)
        return envelope

    @property
    def partition_key(self) -> str:
        return partition_key(self.aggregate_kind, self.aggregate_id)

    def validated(self) -> None:
        """Validate unless `Envelope.new` already did so for this very object.

        Appends call this: re-checking what `new` checked a moment ago was
        most of an append's CPU. Envelopes built any other way (decoded from
        the wire, constructed directly, `msgspec.structs.replace`) are always
        checked. The envelope and its payload are frozen; only mutating a
        payload's dict in place after `new` would go unnoticed.
        """
        ref = _validated.get(id(self))
        if ref is None or ref() is not self:
            self.validate()

    def validate(self) -> None:
        """Every rule an append enforces before writing anything."""
        payload = self.payload
        cls = EVENT_TYPES.get(self.type)
        if cls is None or type(payload) is not cls:
            raise InvalidEvent("type", f"{self.type!r} does not name a {type(payload).__name__}")
        if self.schema_version != cls.SCHEMA_VERSION:
            raise InvalidEvent(
                "schema_version", f"new events are written at version {cls.SCHEMA_VERSION}"
            )
        if not isinstance(self.event_id, uuid.UUID):
            raise InvalidEvent("event_id", "must be a UUID")
        for field in ("causation_id", "correlation_id"):
            value = getattr(self, field)
            if value is not None and not isinstance(value, uuid.UUID):
                raise InvalidEvent(field, "must be a UUID or None")
        payload.validate()
        if (self.aggregate_kind, self.aggregate_id) != payload.aggregate():
            raise InvalidEvent("aggregate_id", "does not match the payload's aggregate")
        if not isinstance(self.precondition, Precondition):
            raise InvalidEvent("precondition", "must be a Precondition")
        if self.precondition.expected_version is not None:
            v.non_negative("precondition.expected_version", self.precondition.expected_version)
        payload.check_precondition(self.precondition)
        v.text("actor", self.actor, max_len=v.ACTOR_MAX)
        if self.idempotency_key is not None:
            v.text("idempotency_key", self.idempotency_key, max_len=256)
        v.positive("occurred_at", self.occurred_at)


# Envelopes validated by `Envelope.new`, by identity. A weak reference's
# callback removes the entry when the envelope is freed, before its id can be
# reused; the `ref() is self` check above guards the rest. Kept outside the
# struct so nothing about it is ever encoded or read from the wire.
_validated: dict[int, weakref.ref[Envelope]] = {}


def _remember_validated(envelope: Envelope) -> None:
    key = id(envelope)

    def forget(_ref: weakref.ref[Envelope]) -> None:
        _validated.pop(key, None)

    _validated[key] = weakref.ref(envelope, forget)
