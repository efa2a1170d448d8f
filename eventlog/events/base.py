"""What every event of the catalogue shares: the base record and common rules."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from eventlog.aggregates import AggregateKind
from eventlog.errors import InvalidEvent
from eventlog.precondition import Precondition

MAX_MODULES = 1000
MAX_VARS = 256
MAX_BINDINGS = 256
MAX_VAR_BYTES = 5 * 1024
MAX_SECRET_CIPHERTEXT = 64 * 1024


class BaseEvent(msgspec.Struct, frozen=True, kw_only=True):
    TYPE: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int] = 1

    def aggregate(self) -> tuple[AggregateKind, str]:
        raise NotImplementedError

    def validate(self) -> None:
        """Raise InvalidEvent if a field breaks the catalogue's rules."""

    def check_precondition(self, precondition: Precondition) -> None:
        """Raise InvalidEvent if the precondition cannot make sense for this event."""


def _no_generation(event: BaseEvent, precondition: Precondition) -> None:
    if precondition.expected_generation is not None:
        raise InvalidEvent(
            "precondition.expected_generation", f"{event.TYPE} does not carry a lease generation"
        )
