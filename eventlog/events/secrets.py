"""Secret events: namespace-scoped (aggregate `namespace`) or worker-scoped (`worker`)."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from eventlog import validation as v
from eventlog.aggregates import AggregateKind, worker_aggregate_id
from eventlog.errors import InvalidEvent
from eventlog.events.base import MAX_SECRET_CIPHERTEXT, BaseEvent, _no_generation
from eventlog.precondition import Precondition


class SealedSecret(msgspec.Struct, frozen=True, kw_only=True):
    """Envelope encryption output: the plaintext never reaches the log."""

    key_id: str
    wrapped_key: bytes
    nonce: bytes
    ciphertext: bytes
    algorithm: str = "AES-256-GCM"


class _SecretEvent(BaseEvent, frozen=True, kw_only=True):
    namespace: str
    worker: str | None = None
    name: str

    def aggregate(self) -> tuple[AggregateKind, str]:
        if self.worker is None:
            return AggregateKind.NAMESPACE, self.namespace
        return AggregateKind.WORKER, worker_aggregate_id(self.namespace, self.worker)

    def validate(self) -> None:
        v.name("namespace", self.namespace)
        if self.worker is not None:
            v.name("worker", self.worker)
        v.secret_name("name", self.name)

    def check_precondition(self, precondition: Precondition) -> None:
        _no_generation(self, precondition)


class SecretPut(_SecretEvent, frozen=True, kw_only=True):
    """Create or replace a secret at namespace scope (worker=None) or worker scope."""

    TYPE: ClassVar[str] = "secret.put"

    sealed: SealedSecret

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.sealed, SealedSecret):
            raise InvalidEvent("sealed", "must be a SealedSecret")
        v.identifier("sealed.key_id", self.sealed.key_id)
        v.non_empty_bytes("sealed.wrapped_key", self.sealed.wrapped_key, max_len=1024)
        v.non_empty_bytes("sealed.nonce", self.sealed.nonce, max_len=64)
        v.non_empty_bytes(
            "sealed.ciphertext", self.sealed.ciphertext, max_len=MAX_SECRET_CIPHERTEXT
        )
        v.text("sealed.algorithm", self.sealed.algorithm, max_len=64)


class SecretDeleted(_SecretEvent, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "secret.deleted"


SecretEvent = SecretPut | SecretDeleted

CLASSES: tuple[type[SecretEvent], ...] = (SecretPut, SecretDeleted)
