"""D1 databases in the fold: create/delete, database ids, migrations, backups, bindings."""

from __future__ import annotations

import msgspec
import pytest

from eventlog import events as ev
from eventlog.errors import InvalidEvent
from projections import keys
from tests.factories import upload
from tests.unit.test_fold import Harness, accepted

DB_ID = "6d0f7a3c-1b2e-4c5d-8e9f-0a1b2c3d4e5f"
OTHER_ID = "0e1d2c3b-4a59-4687-9a0b-1c2d3e4f5a6b"
D1 = ev.Binding(name="DB", kind="d1", target="main")


def with_db() -> Harness:
    h = Harness()
    assert accepted(h.send(ev.NamespaceCreated(namespace="acme")))
    assert accepted(h.send(ev.D1DatabaseCreated(namespace="acme", name="main",
                                                database_id=DB_ID)))
    return h


def test_created_renders_its_database_id() -> None:
    h = with_db()
    doc = h.get(keys.resources("d1", "acme"), "main")
    assert isinstance(doc, dict)
    assert (doc["database_id"], doc["migrations"], doc["version"]) == (DB_ID, [], 1)
    again = h.send(ev.D1DatabaseCreated(namespace="acme", name="main", database_id=OTHER_ID))
    assert again.code == "resource_exists"


def test_a_database_id_names_one_database_of_a_namespace() -> None:
    h = with_db()
    twin = h.send(ev.D1DatabaseCreated(namespace="acme", name="copy", database_id=DB_ID))
    assert twin.code == "database_id_in_use"
    h.send(ev.NamespaceCreated(namespace="other"))
    # Ids are per namespace: another namespace may use the same uuid for its own database.
    assert accepted(h.send(ev.D1DatabaseCreated(namespace="other", name="copy",
                                                database_id=DB_ID)))


def test_bad_names_and_ids_are_invalid() -> None:
    with pytest.raises(InvalidEvent):
        ev.D1DatabaseCreated(namespace="acme", name="Main", database_id=DB_ID).validate()
    with pytest.raises(InvalidEvent):
        ev.D1DatabaseCreated(namespace="acme", name="main", database_id="nope").validate()
    with pytest.raises(InvalidEvent):
        ev.D1MigrationsApplied(namespace="acme", name="main", migrations=()).validate()


def test_binding_needs_the_database_and_pins_it() -> None:
    h = Harness()
    h.send(ev.NamespaceCreated(namespace="acme"))
    version = msgspec.structs.replace(upload("acme", "api", "v1"), bindings=(D1,))
    assert h.send(version).code == "binding_target_missing"
    h.send(ev.D1DatabaseCreated(namespace="acme", name="main", database_id=DB_ID))
    assert accepted(h.send(version))
    assert accepted(h.send(ev.VersionPromoted(namespace="acme", worker="api", version_id="v1")))
    in_use = h.send(ev.D1DatabaseDeleted(namespace="acme", name="main"))
    assert in_use.code == "resource_in_use" and "D1 database" in in_use.message
    assert accepted(h.send(ev.D1DatabaseDeleted(namespace="acme", name="main", force=True)))
    assert h.get(keys.resources("d1", "acme"), "main") is None


def test_migrations_accumulate_and_never_apply_twice() -> None:
    h = with_db()
    assert accepted(h.send(ev.D1MigrationsApplied(namespace="acme", name="main",
                                                  migrations=("0001_init.sql",))))
    assert accepted(h.send(ev.D1MigrationsApplied(namespace="acme", name="main",
                                                  migrations=("0002_more.sql",))))
    twice = h.send(ev.D1MigrationsApplied(namespace="acme", name="main",
                                          migrations=("0002_more.sql",)))
    assert twice.code == "migration_already_applied"
    doc = h.get(keys.resources("d1", "acme"), "main")
    assert isinstance(doc, dict) and doc["migrations"] == ["0001_init.sql", "0002_more.sql"]
    missing = h.send(ev.D1MigrationsApplied(namespace="acme", name="nope",
                                            migrations=("0001_init.sql",)))
    assert missing.code == "resource_not_found"


def test_backups_and_restore() -> None:
    h = with_db()
    sha = "a" * 64
    assert h.send(ev.D1DatabaseRestored(namespace="acme", name="main",
                                        backup_id="b1")).code == "backup_not_found"
    assert accepted(h.send(ev.D1BackupCreated(namespace="acme", name="main", backup_id="b1",
                                              size=4096, sha256=sha)))
    dup = h.send(ev.D1BackupCreated(namespace="acme", name="main", backup_id="b1", size=1,
                                    sha256=sha))
    assert dup.code == "backup_exists"
    backup = h.get(keys.d1_backups("acme", "main"), "b1")
    assert isinstance(backup, dict) and backup["size"] == 4096
    assert accepted(h.send(ev.D1DatabaseRestored(namespace="acme", name="main",
                                                 backup_id="b1")))
    doc = h.get(keys.resources("d1", "acme"), "main")
    assert isinstance(doc, dict) and doc["restored_from"] == "b1"
    # Deleting the database drops its backups' records; a new one starts empty.
    assert accepted(h.send(ev.D1DatabaseDeleted(namespace="acme", name="main")))
    assert h.get(keys.d1_backups("acme", "main"), "b1") is None
    assert accepted(h.send(ev.D1DatabaseCreated(namespace="acme", name="main",
                                                database_id=OTHER_ID)))
    assert h.send(ev.D1DatabaseRestored(namespace="acme", name="main",
                                        backup_id="b1")).code == "backup_not_found"
