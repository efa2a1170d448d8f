"""Typed failures of the event log, each with a stable machine-readable code."""

from __future__ import annotations

from typing import ClassVar


class EventLogError(Exception):
    """Base of every error the event log raises on purpose."""

    code: ClassVar[str] = "event_log_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message}


class InvalidEvent(EventLogError, ValueError):
    """The event breaks a rule of the catalogue; nothing was written.

    Also a ValueError so msgspec and pydantic callers treat it as bad input.
    """

    code = "invalid_event"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "field": self.field, "reason": self.reason}


class ReservedName(InvalidEvent):
    """A tenant-chosen name in the platform's reserved space (eventlog.validation)."""

    code = "reserved_name"


class EventTooLarge(EventLogError):
    """The encoded event exceeds the configured limit; nothing was written."""

    code = "event_too_large"

    def __init__(self, size: int, limit: int, event_type: str) -> None:
        super().__init__(f"{event_type} encodes to {size} bytes, over the {limit} byte limit")
        self.size = size
        self.limit = limit
        self.event_type = event_type

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "size": self.size, "limit": self.limit}


class LogUnavailable(EventLogError):
    """The log could not be reached or did not confirm the append in time.

    `outcome_unknown` is True when the event may still land later (it was
    handed to the broker client before the deadline). Retrying the same
    envelope is safe: readers recognise the copy by its event id.
    """

    code = "log_unavailable"

    def __init__(self, message: str, *, outcome_unknown: bool = False) -> None:
        super().__init__(message)
        self.outcome_unknown = outcome_unknown

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "outcome_unknown": self.outcome_unknown}


class LogNotStarted(EventLogError):
    code = "log_not_started"


class PartitionCountMismatch(EventLogError):
    """An existing log has another partition count than the one configured.

    Refused because the partition of every aggregate would silently move.
    """

    code = "partition_count_mismatch"

    def __init__(self, existing: int, configured: int) -> None:
        super().__init__(f"log has {existing} partitions but {configured} were configured")
        self.existing = existing
        self.configured = configured


class UndecodableEvent(EventLogError):
    """Bytes in the log that do not decode to a current envelope."""

    code = "undecodable_event"


class UnknownEventType(UndecodableEvent):
    code = "unknown_event_type"

    def __init__(self, event_type: str) -> None:
        super().__init__(f"unknown event type {event_type!r}")
        self.event_type = event_type


class UnsupportedSchemaVersion(UndecodableEvent):
    """Written by a newer writer (or with a version no upcaster covers)."""

    code = "unsupported_schema_version"

    def __init__(self, event_type: str, version: int, current: int) -> None:
        super().__init__(
            f"{event_type} schema_version {version} cannot be read (current is {current})"
        )
        self.event_type = event_type
        self.version = version
        self.current = current


class InvalidLogUrl(EventLogError, ValueError):
    code = "invalid_log_url"
