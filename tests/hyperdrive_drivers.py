"""The Hyperdrive driver fixtures (tests/fixtures/hyperdrive_postgresjs, hyperdrive_pg):
an origin for them in the harness's PostgreSQL, the projects as `wdl deploy` reads them,
and the answers their /run must give. Shared by tests/integration/test_hyperdrive_drivers.py
and `python -m bench hyperdrive`."""

from __future__ import annotations

import contextlib
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from harness.endpoints import ROOT
from tests.npm_fixture import node_modules

FIXTURES = ROOT / "tests" / "fixtures"
DRIVERS = ("postgresjs", "pg")
WORKERS = {"postgresjs": "hd-postgresjs", "pg": "hd-pg"}
ITEMS = 1000


@dataclass(frozen=True)
class Origin:
    """A role of its own owning `items` and `entries` in a database of its own."""

    url: str  # the role's connection string (what `wdl hyperdrive create` is given)
    admin_url: str  # the harness's superuser, same database
    role: str
    database: str


@contextlib.contextmanager
def origin(admin_database_url: str) -> Iterator[Origin]:
    """A fresh database and role (`items` 1..ITEMS with v = 'v<id>'; `entries(tag, n)`);
    the role's sessions are ended and it is dropped afterwards."""
    base = admin_database_url.rpartition("/")[0]
    database = f"hd_{uuid.uuid4().hex[:12]}"
    role = f"hd_origin_{uuid.uuid4().hex[:10]}"
    password = f"OriginPw-{uuid.uuid4().hex}"
    admin = f"{base}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f'CREATE DATABASE "{database}" OWNER {role}')
    host = base.split("@", 1)[1]
    url = f"postgresql://{role}:{password}@{host}/{database}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL)")
        conn.execute("INSERT INTO items SELECT i, 'v' || i FROM generate_series(1, %s) i",
                     (ITEMS,))
        conn.execute("CREATE TABLE entries (tag text NOT NULL, n int NOT NULL)")
    try:
        yield Origin(url, f"{base}/{database}", role, database)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE usename = %s", (role,))
            conn.execute(f"DROP ROLE IF EXISTS {role}")


def project(driver: str, dest: Path, config_id: str) -> Path:
    """The fixture as a project directory binding config `config_id` as HD, its npm
    packages installed (once per lockfile, tests/npm_fixture.py)."""
    fixture = FIXTURES / f"hyperdrive_{driver}"
    directory = dest / f"hyperdrive-{driver}"
    shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(fixture, directory, ignore=shutil.ignore_patterns("node_modules"))
    (directory / "node_modules").symlink_to(node_modules(fixture, f"hyperdrive-{driver}"),
                                           target_is_directory=True)
    config = directory / "wrangler.jsonc"
    text, n = re.subn(r'"id": "[0-9a-f]{32}"', f'"id": "{config_id}"', config.read_text())
    assert n == 1
    config.write_text(text)
    return directory


def expected(driver: str, who: Origin) -> dict[str, Any]:
    """What /run answers: the origin's role and database (the pooler's alias reached the
    origin), the prepared statement's rows, only the committed insert, and the SQL error
    as each driver's own error class with PostgreSQL's SQLSTATE and message."""
    error = {"postgresjs": {"class": "PostgresError", "name": "PostgresError"},
             "pg": {"class": "DatabaseError", "name": "error"}}[driver]
    return {
        "who": {"user": who.role, "db": who.database},
        "prepared": [{"id": 7, "v": "v7"}, {"id": 8, "v": "v8"}, {"id": 7, "v": "v7"}],
        "rolledBack": "roll it back",
        "entries": [1],
        "error": {**error, "code": "42P01", "severity": "ERROR",
                  "message": 'relation "no_such_table" does not exist'},
        "after": 2,
    }
