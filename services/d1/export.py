"""A D1 database as SQL (export) and a backup copied back into it (restore).

Both run on the owner's connection inside a fenced transaction *with the tenant's
authorizer judging them* (engine.py): what they read and write is the tenant's own
data and schema, so they need nothing tenant SQL may not do. Nothing tenant-chosen is
ever pasted into SQL text except as a double-quoted identifier (names are data: a
table named `x'||(SELECT …)||'` is just a name), and rows are copied as bound values.

The export follows Miniflare's `dumpSql` (the reference): the schema and rows of each
table, then indexes, triggers and views; a database with a virtual table is not
exported ("D1 Export error: cannot export databases with Virtual Tables (fts5)").
The restore replaces every table of the tenant's with the backup's, virtual tables
(FTS5, R*Tree) included: they are created again and their shadow tables' rows copied.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from services.d1.confinement import allowed_name

VIRTUAL_TABLES_REFUSED = "D1 Export error: cannot export databases with Virtual Tables (fts5)"
_BATCH = 500


class ExportRefused(Exception):
    pass


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _virtual(sql: str) -> bool:
    return sql.lstrip().upper().startswith("CREATE VIRTUAL TABLE")


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    """The table's stored columns (generated and hidden ones cannot be inserted)."""
    return [str(row[1]) for row in conn.execute(f"PRAGMA table_xinfo({ident(table)})")
            if row[6] == 0]


def _tenant_tables(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    rows = conn.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'table' "
                        "AND sql IS NOT NULL ORDER BY rowid").fetchall()
    return [(str(name), str(sql)) for name, sql in rows]


def dump(conn: sqlite3.Connection) -> list[str]:
    """The database as SQL statements, without the platform's tables."""
    tables = _tenant_tables(conn)
    if any(_virtual(sql) for _, sql in tables):
        raise ExportRefused(VIRTUAL_TABLES_REFUSED)
    out: list[str] = []
    sequence: list[str] = []
    analyze = False
    for name, sql in tables:
        if name == "sqlite_sequence":
            sequence = ["DELETE FROM sqlite_sequence;"] + [
                f"INSERT INTO sqlite_sequence VALUES({n},{s});" for n, s in conn.execute(
                    "SELECT quote(name), quote(seq) FROM sqlite_sequence")]
            continue
        if name.lower().startswith("sqlite_stat"):
            analyze = True
            continue
        if name.lower().startswith("sqlite_") or not allowed_name(name):
            continue
        out.append(f"{sql};")
        out.extend(_rows(conn, name))
    if analyze:
        out.append("ANALYZE sqlite_schema;")
    out.extend(f"{sql};" for (sql,) in conn.execute(
        "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL "
        "AND type IN ('index', 'trigger', 'view') ORDER BY rowid"))
    return out + sequence


def _rows(conn: sqlite3.Connection, table: str) -> Iterator[str]:
    columns = _columns(conn, table)
    if not columns:
        return
    select = ", ".join(f"quote({ident(c)})" for c in columns)
    into = ident(table) if len(columns) == len(_all_columns(conn, table)) else \
        f"{ident(table)}({', '.join(ident(c) for c in columns)})"
    for row in conn.execute(f"SELECT {select} FROM {ident(table)}"):
        yield f"INSERT INTO {into} VALUES({','.join(str(v) for v in row)});"


def _all_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [str(row[1]) for row in conn.execute(f"PRAGMA table_xinfo({ident(table)})")]


def open_backup(path: Path) -> sqlite3.Connection:
    """A backup file, read-only (it is the platform's own temporary copy)."""
    return sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True,
                           isolation_level=None)


def restore(conn: sqlite3.Connection, source: sqlite3.Connection) -> None:
    """Replace the tenant's tables, views, indexes and triggers with the backup's, in
    the caller's (fenced) transaction on `conn`."""
    conn.execute("PRAGMA defer_foreign_keys=ON")
    _drop_everything(conn)
    tables = _tenant_tables(source)
    shadow = {str(row[1]) for row in source.execute("PRAGMA table_list")
              if row[0] == "main" and row[2] == "shadow"}
    has_sequence = has_stats = False
    for name, sql in tables:
        if name == "sqlite_sequence":
            has_sequence = True
            continue
        if name.lower().startswith("sqlite_stat"):
            has_stats = True
            continue
        if name.lower().startswith("sqlite_") or not allowed_name(name) or name in shadow:
            continue
        conn.execute(sql)
        if not _virtual(sql):
            _copy_rows(source, conn, name)
    # A virtual table made its shadow tables when it was created again: their rows
    # (the index, the content) come from the backup as they are.
    for name in sorted(shadow):
        if allowed_name(name):
            conn.execute(f"DELETE FROM {ident(name)}")
            _copy_rows(source, conn, name)
    for (sql,) in source.execute("SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL "
                                 "AND type IN ('index', 'trigger', 'view') ORDER BY rowid"):
        conn.execute(sql)
    if has_sequence:
        conn.execute("DELETE FROM sqlite_sequence")
        conn.executemany("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)",
                         source.execute("SELECT name, seq FROM sqlite_sequence"))
    if has_stats:
        conn.execute("ANALYZE")


def _drop_everything(conn: sqlite3.Connection) -> None:
    objects = conn.execute("SELECT type, name, sql FROM sqlite_schema "
                           "WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' "
                           "ORDER BY type = 'table', rowid").fetchall()
    # Views first, then virtual tables (which drop their shadow tables), then the rest.
    objects.sort(key=lambda o: (o[0] == "table", not _virtual(o[2] or "")))
    for kind, name, _ in objects:
        if allowed_name(name):
            conn.execute(f"DROP {'VIEW' if kind == 'view' else 'TABLE'} IF EXISTS "
                         f"{ident(name)}")


def _copy_rows(source: sqlite3.Connection, conn: sqlite3.Connection, table: str) -> None:
    columns = _columns(source, table)
    if not columns:
        return
    names = ", ".join(ident(c) for c in columns)
    insert = (f"INSERT INTO {ident(table)} ({names}) "
              f"VALUES ({', '.join('?' for _ in columns)})")
    rows = source.execute(f"SELECT {names} FROM {ident(table)}")
    while batch := rows.fetchmany(_BATCH):
        conn.executemany(insert, batch)
