"""D1 databases (aggregate kind `d1`): the shared resource rules plus what D1 adds.

A database's record in `res:d1:{ns}` also carries its `database_id` (unique in
the namespace, so wrangler's id can name it), the migrations applied so far and
the backup it was last restored from; its backups are `d1_backups:{ns}/{name}`.
Owners and generations are not here: they are leases (`d1:{ns}/{name}`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from eventlog import events as ev
from eventlog.aggregates import AggregateKind
from eventlog.envelope import Envelope
from projections import keys
from projections.changes import Changes
from projections.fold.core import Reject
from projections.fold.encoding import dumps
from projections.fold.resources import ResourceRules, ResourceState


@dataclass(slots=True)
class D1State:
    database_id: str
    migrations: list[str] = field(default_factory=list)
    backups: set[str] = field(default_factory=set)
    restored_from: str = ""


class D1Rules(ResourceRules):
    HANDLERS: ClassVar[Mapping[type[Any], str]] = {
        ev.D1DatabaseCreated: "_d1_created",
        ev.D1DatabaseDeleted: "_d1_deleted",
        ev.D1MigrationsApplied: "_d1_migrations_applied",
        ev.D1BackupCreated: "_d1_backup_created",
        ev.D1DatabaseRestored: "_d1_restored",
    }
    VERSIONS: ClassVar[Mapping[str, str]] = {AggregateKind.D1_DATABASE: "_d1_version"}

    def __init__(self, partition: int) -> None:
        super().__init__(partition)
        self.d1: dict[tuple[str, str], D1State] = {}

    def _d1_version(self, aggregate_id: str) -> int:
        return self._resource_version(AggregateKind.D1_DATABASE, aggregate_id)

    def _d1_render(self, ns: str, name: str, out: Changes) -> None:
        state = self.resources[("d1", ns, name)]
        d1 = self.d1[(ns, name)]
        out.set(keys.resources("d1", ns), name, dumps({
            "created_at": state.created_at, "created_by": state.created_by,
            "version": state.version, "database_id": d1.database_id,
            "migrations": d1.migrations, "restored_from": d1.restored_from}))

    def _d1_live(self, e: ev.D1MigrationsApplied | ev.D1BackupCreated | ev.D1DatabaseRestored,
                 ) -> tuple[ResourceState, D1State]:
        state = self.resources.get(("d1", e.namespace, e.name))
        if state is None or not state.exists:
            raise Reject("resource_not_found",
                         f"{self._label('d1', e.namespace, e.name)} does not exist")
        return state, self.d1[(e.namespace, e.name)]

    def _d1_created(self, e: ev.D1DatabaseCreated, env: Envelope, out: Changes) -> int:
        for (ns, name), d1 in self.d1.items():
            if ns == e.namespace and name != e.name and d1.database_id == e.database_id \
                    and self.resources[("d1", ns, name)].exists:
                raise Reject("database_id_in_use",
                             f"database_id {e.database_id} already names D1 database "
                             f"{name!r} of namespace {ns}")
        version = self._resource_created(e, env, out)
        self.d1[(e.namespace, e.name)] = D1State(database_id=e.database_id)
        self._d1_render(e.namespace, e.name, out)
        return version

    def _d1_deleted(self, e: ev.D1DatabaseDeleted, env: Envelope, out: Changes) -> int:
        version = self._resource_deleted(e, env, out)
        self.d1.pop((e.namespace, e.name), None)
        out.drop(keys.d1_backups(e.namespace, e.name))
        return version

    def _d1_migrations_applied(self, e: ev.D1MigrationsApplied, env: Envelope,
                               out: Changes) -> int:
        state, d1 = self._d1_live(e)
        again = sorted(set(e.migrations) & set(d1.migrations))
        if again:
            raise Reject("migration_already_applied",
                         f"migration {again[0]} is already applied to "
                         f"{self._label('d1', e.namespace, e.name)}")
        d1.migrations.extend(e.migrations)
        state.version += 1
        self._d1_render(e.namespace, e.name, out)
        return state.version

    def _d1_backup_created(self, e: ev.D1BackupCreated, env: Envelope, out: Changes) -> int:
        state, d1 = self._d1_live(e)
        if e.backup_id in d1.backups:
            raise Reject("backup_exists", f"backup {e.backup_id} already exists")
        d1.backups.add(e.backup_id)
        state.version += 1
        out.set(keys.d1_backups(e.namespace, e.name), e.backup_id, dumps({
            "size": e.size, "sha256": e.sha256, "created_at": env.occurred_at,
            "created_by": env.actor}))
        return state.version

    def _d1_restored(self, e: ev.D1DatabaseRestored, env: Envelope, out: Changes) -> int:
        state, d1 = self._d1_live(e)
        if e.backup_id not in d1.backups:
            raise Reject("backup_not_found", f"backup {e.backup_id} of "
                         f"{self._label('d1', e.namespace, e.name)} does not exist")
        d1.restored_from = e.backup_id
        state.version += 1
        self._d1_render(e.namespace, e.name, out)
        return state.version
