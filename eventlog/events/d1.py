"""D1 database events (aggregate kind `d1`): the control half of D1.

Rows are tenant data (services/d1, one SQLite file per database), never on the
control log. What is here is what an operator audits: a database came or went
(with the uuid wrangler's `database_id` names), which migrations were applied
to it, which backups exist and which one it was restored from.
"""

from __future__ import annotations

import re
from typing import ClassVar

from eventlog import validation as v
from eventlog.aggregates import AggregateKind
from eventlog.errors import InvalidEvent
from eventlog.events.resources import ResourceDeletion, ResourceEvent
from eventlog.validation import d1_name

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MIGRATION_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
MAX_MIGRATIONS_PER_EVENT = 1000


def database_id(field: str, value: object) -> str:
    if not isinstance(value, str) or UUID_RE.fullmatch(value) is None:
        raise InvalidEvent(field, f"{value!r} is not a lowercase uuid")
    return value


class _D1Event(ResourceEvent, frozen=True, kw_only=True):
    KIND: ClassVar[AggregateKind] = AggregateKind.D1_DATABASE

    def validate_name(self) -> None:
        d1_name("name", self.name)


class D1DatabaseCreated(_D1Event, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "d1.database_created"

    database_id: str

    def validate(self) -> None:
        super().validate()
        database_id("database_id", self.database_id)


class D1DatabaseDeleted(ResourceDeletion, _D1Event, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "d1.database_deleted"


class D1MigrationsApplied(_D1Event, frozen=True, kw_only=True):
    """Migrations (file names of wrangler's migrations directory) now in `d1_migrations`."""

    TYPE: ClassVar[str] = "d1.migrations_applied"

    migrations: tuple[str, ...]

    def validate(self) -> None:
        super().validate()
        if not self.migrations:
            raise InvalidEvent("migrations", "names no migration")
        if len(self.migrations) > MAX_MIGRATIONS_PER_EVENT:
            raise InvalidEvent("migrations", f"more than {MAX_MIGRATIONS_PER_EVENT}")
        for i, name in enumerate(self.migrations):
            if not isinstance(name, str) or MIGRATION_NAME_RE.fullmatch(name) is None:
                raise InvalidEvent(f"migrations[{i}]", f"{name!r} is not a migration file name")


class D1BackupCreated(_D1Event, frozen=True, kw_only=True):
    """A consistent copy (SQLite online backup) now in the object store."""

    TYPE: ClassVar[str] = "d1.backup_created"

    backup_id: str
    size: int
    sha256: str

    def validate(self) -> None:
        super().validate()
        v.identifier("backup_id", self.backup_id)
        v.non_negative("size", self.size)
        v.sha256_hex("sha256", self.sha256)


class D1DatabaseRestored(_D1Event, frozen=True, kw_only=True):
    """The database's content was replaced by backup `backup_id`."""

    TYPE: ClassVar[str] = "d1.database_restored"

    backup_id: str

    def validate(self) -> None:
        super().validate()
        v.identifier("backup_id", self.backup_id)


D1Event = (D1DatabaseCreated | D1DatabaseDeleted | D1MigrationsApplied | D1BackupCreated
           | D1DatabaseRestored)

CLASSES: tuple[type[D1Event], ...] = (D1DatabaseCreated, D1DatabaseDeleted, D1MigrationsApplied,
                                      D1BackupCreated, D1DatabaseRestored)
