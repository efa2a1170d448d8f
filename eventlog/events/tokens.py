"""API token events (aggregate kind `token`)."""

from __future__ import annotations

from typing import ClassVar, Literal

from eventlog import validation as v
from eventlog.aggregates import AggregateKind
from eventlog.errors import InvalidEvent
from eventlog.events.base import BaseEvent, _no_generation
from eventlog.precondition import Precondition

Role = Literal["admin", "deployer", "observer"]


class _TokenEvent(BaseEvent, frozen=True, kw_only=True):
    token_id: str

    def aggregate(self) -> tuple[AggregateKind, str]:
        return AggregateKind.TOKEN, self.token_id

    def validate(self) -> None:
        v.identifier("token_id", self.token_id)

    def check_precondition(self, precondition: Precondition) -> None:
        _no_generation(self, precondition)


class TokenIssued(_TokenEvent, frozen=True, kw_only=True):
    """Only the sha256 of the secret token is recorded.

    An empty `namespaces` means every namespace and is allowed for admins only.
    """

    TYPE: ClassVar[str] = "token.issued"
    SCHEMA_VERSION: ClassVar[int] = 2

    token_sha256: bytes
    role: Role
    namespaces: tuple[str, ...] = ()
    label: str = ""
    expires_at: int | None = None

    def validate(self) -> None:
        super().validate()
        v.sha256_bytes("token_sha256", self.token_sha256)
        if self.role not in ("admin", "deployer", "observer"):
            raise InvalidEvent("role", f"{self.role!r} is not admin, deployer or observer")
        if not self.namespaces and self.role != "admin":
            raise InvalidEvent("namespaces", f"a {self.role} token needs at least one namespace")
        if len(set(self.namespaces)) != len(self.namespaces):
            raise InvalidEvent("namespaces", "namespaces must be unique")
        for i, ns in enumerate(self.namespaces):
            v.name(f"namespaces[{i}]", ns)
        v.text("label", self.label, max_len=256, allow_empty=True)
        if self.expires_at is not None:
            v.positive("expires_at", self.expires_at)


class TokenRevoked(_TokenEvent, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "token.revoked"

    reason: str = ""

    def validate(self) -> None:
        super().validate()
        v.text("reason", self.reason, max_len=v.REASON_MAX, allow_empty=True)


TokenEvent = TokenIssued | TokenRevoked

CLASSES: tuple[type[TokenEvent], ...] = (TokenIssued, TokenRevoked)
