"""One D1 database: a SQLite file (WAL, synchronous=FULL) and its generation fence.

Every request runs as one `BEGIN IMMEDIATE` transaction that first reads the
fence row and rolls back unless it holds this owner's generation. SQLite's
write lock serializes that check against a new owner's fence bump (also a
`BEGIN IMMEDIATE`), so once the new owner has bumped it, no transaction of an
older generation can commit (docs/d1.md, "Why the fence is safe").

Statements follow Miniflare's D1 simulator (the behaviour reference): the
statements of one request commit together or not at all, results come as
columns + rows (blobs as byte arrays), and errors carry SQLite's message with
its error name (`no such table: t: SQLITE_ERROR`).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FENCE_TABLE = "_wdl_fence"
SERVED_BY = "wdl-d1"
MAX_STATEMENT_BYTES = 100_000
MAX_BOUND_PARAMS = 100
MAX_RESULT_BYTES = 32 * 1024 * 1024
_STATE = ("SELECT last_insert_rowid(), (SELECT page_count FROM pragma_page_count()), "
          "(SELECT page_size FROM pragma_page_size())")
_FENCE_READ = f"SELECT generation FROM {FENCE_TABLE} WHERE id = 1"
_FENCE_WRITE = f"UPDATE {FENCE_TABLE} SET generation = ? WHERE id = 1"
# The authorizer stays installed (installing one expires every prepared statement,
# which cost a re-prepare of each statement per request) and only judges tenant SQL.
# The platform's own statements are prepared unjudged and cached by their text, so a
# tenant statement with exactly that text would reuse them: it is refused up front.
_PLATFORM_SQL = frozenset({_FENCE_READ, _FENCE_WRITE})
_NOT_AUTHORIZED = "not authorized: SQLITE_AUTH"
# Every request is one fenced transaction: a tenant COMMIT would end it early and run the
# statements after it unfenced and not all-or-nothing. workerd refuses these statements in
# its SQLite-backed storage (which Miniflare's D1 runs on) with this text.
TRANSACTION_REFUSED = (
    "To execute a transaction, please use the state.storage.transaction() or "
    "state.storage.transactionSync() APIs instead of the SQL BEGIN TRANSACTION or SAVEPOINT "
    "statements. The JavaScript API is safer because it will automatically roll back on "
    "exceptions, and because it interacts correctly with Durable Objects' automatic atomic "
    "write coalescing.")
_TRANSACTION_ACTIONS = frozenset({sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT})
# The platform's own transaction statements, prepared unjudged and cached by their text
# like _PLATFORM_SQL: a tenant statement of exactly that text would skip the authorizer.
_PLATFORM_TRANSACTION_SQL = frozenset({"BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"})
_COMMENT_LINES = re.compile(r"^\s+--.*", re.MULTILINE)
# Tenant SQL never sees the platform's tables (D1 reserves `_cf_` the same way).
_RESERVED = ("_wdl_", "_cf_")


class D1Failure(Exception):
    """A refusal the tenant sees as `D1_ERROR: <message>`."""


class Fenced(Exception):
    """This owner's generation is no longer the database's: it must not act."""

    def __init__(self, mine: int, current: int) -> None:
        super().__init__(f"owner generation {mine} is fenced off (the database is at "
                         f"generation {current})")
        self.mine = mine
        self.current = current


_PRIMARY = ("", "ERROR", "INTERNAL", "PERM", "ABORT", "BUSY", "LOCKED", "NOMEM", "READONLY",
            "INTERRUPT", "IOERR", "CORRUPT", "NOTFOUND", "FULL", "CANTOPEN", "PROTOCOL", "EMPTY",
            "SCHEMA", "TOOBIG", "CONSTRAINT", "MISMATCH", "MISUSE", "NOLFS", "AUTH", "FORMAT",
            "RANGE", "NOTADB")
_SYNTAX = re.compile(r'near "(.*)": syntax error')
_BLANK = re.compile(r"(--[^\n]*)|(/\*.*?\*/)|\s", re.DOTALL)


def _message(exc: sqlite3.Error, sql: str) -> str:
    """SQLite's message as workerd words it: `<message>: SQLITE_<PRIMARY>` and, for an
    extended code, ` (extended: SQLITE_<EXTENDED>)`; a syntax error names its offset."""
    text = str(exc)
    if isinstance(exc, sqlite3.ProgrammingError) and text.startswith("Incorrect number of "
                                                                     "bindings"):
        return "Wrong number of parameter bindings for SQL query."
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return text
    near = _SYNTAX.fullmatch(text)
    if near is not None and near.group(1) in sql:
        text += f" at offset {sql.index(near.group(1))}"
    primary = _PRIMARY[code & 0xFF] if 0 < code & 0xFF < len(_PRIMARY) else str(code)
    extended = getattr(exc, "sqlite_errorname", "")
    text += f": SQLITE_{primary}"
    if extended and extended != f"SQLITE_{primary}":
        text += f" (extended: {extended})"
    return text


def statements(sql: str) -> list[str]:
    """The statements of `sql` (SQLite's own completeness test decides where one ends)."""
    out: list[str] = []
    start = 0
    for i, c in enumerate(sql):
        if c == ";" and sqlite3.complete_statement(sql[start:i + 1]):
            out.append(sql[start:i + 1])
            start = i + 1
    rest = sql[start:]
    if _BLANK.sub("", rest):
        out.append(rest)
    return out


def _tenant_authorize(action: int, arg1: str | None, arg2: str | None) -> int:
    if action in _TRANSACTION_ACTIONS:
        return sqlite3.SQLITE_DENY
    for name in (arg1, arg2):
        if name and name.lower().startswith(_RESERVED) and \
                action not in (sqlite3.SQLITE_FUNCTION,):
            return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _param(value: Any) -> Any:
    if isinstance(value, list):
        if not all(isinstance(b, int) and 0 <= b < 256 for b in value):
            raise D1Failure("Type 'object' not supported for value")
        return bytes(value)
    if isinstance(value, bool):
        return int(value)
    if value is None or isinstance(value, int | float | str):
        return value
    raise D1Failure(f"Type '{type(value).__name__}' not supported for value '{value}'")


def _cell(value: Any) -> Any:
    return list(value) if isinstance(value, bytes) else value


class Database:
    """Opened by its owner; every method runs on a worker thread (SQLite blocks)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.conn: sqlite3.Connection | None = None
        self._current = ""  # the statement running (its text places a syntax error)
        self._tenant = False  # tenant SQL is running: the authorizer judges it
        self._refused_transaction = False  # the authorizer refused BEGIN/COMMIT/SAVEPOINT

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=30.0)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: the WAL is fsynced at every commit, so an acknowledged write survives
        # SIGKILL and power loss (NORMAL would only survive the process dying).
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {FENCE_TABLE} "
                     "(id INTEGER PRIMARY KEY CHECK (id = 1), generation INTEGER NOT NULL)")
        conn.execute(f"INSERT OR IGNORE INTO {FENCE_TABLE} VALUES (1, 0)")
        conn.set_authorizer(self._authorize)
        self.conn = conn

    def _authorize(self, action: int, arg1: str | None, arg2: str | None, db: str | None,
                   trigger: str | None) -> int:
        if not self._tenant:
            return sqlite3.SQLITE_OK
        verdict = _tenant_authorize(action, arg1, arg2)
        if verdict == sqlite3.SQLITE_DENY and action in _TRANSACTION_ACTIONS:
            self._refused_transaction = True
        return verdict

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _c(self) -> sqlite3.Connection:
        if self.conn is None:
            self.open()
        assert self.conn is not None
        return self.conn

    def claim(self, generation: int) -> None:
        """Write this owner's generation into the fence (never lowering it)."""
        with self.lock:
            conn = self._c()
            conn.execute("BEGIN IMMEDIATE")
            try:
                current = conn.execute(_FENCE_READ).fetchone()[0]
                if current > generation:
                    raise Fenced(generation, current)
                conn.execute(_FENCE_WRITE, (generation,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def fenced(self, generation: int, *, tenant: bool = True,
               ) -> Iterator[sqlite3.Connection]:
        """A write transaction that commits only if the fence still holds `generation`.
        `tenant`: the statements in it are tenant SQL (the authorizer judges them);
        otherwise the platform's own (dump, restore), run without an authorizer."""
        with self.lock:
            conn = self._c()
            conn.execute("BEGIN IMMEDIATE")
            try:
                current = conn.execute(_FENCE_READ).fetchone()[0]
                if current != generation:
                    raise Fenced(generation, current)
                if not tenant:
                    conn.set_authorizer(None)
                self._tenant = tenant
                try:
                    yield conn
                finally:
                    self._tenant = False
                    if not tenant:
                        # Installing it expires what was prepared unjudged meanwhile: a
                        # tenant statement of the same text is prepared (judged) again.
                        conn.set_authorizer(self._authorize)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _state(self, conn: sqlite3.Connection) -> tuple[int, int]:
        """(last_insert_rowid, database size in bytes) in one statement: this runs
        twice per statement, on the point-read path."""
        rowid, pages, page_size = conn.execute(_STATE).fetchone()
        return int(rowid), int(pages) * int(page_size)

    def query(self, generation: int, queries: list[dict[str, Any]], fmt: str,
              ) -> list[dict[str, Any]]:
        """All statements in one transaction; raises D1Failure (nothing committed)."""
        queries = [q for q in queries if _COMMENT_LINES.sub("", q["sql"]).strip()]
        if not queries:
            raise D1Failure("No SQL statements detected.")
        for q in queries:
            if len(q["sql"].encode("utf-8")) > MAX_STATEMENT_BYTES:
                raise D1Failure(f"statement too long: {MAX_STATEMENT_BYTES} bytes at most: "
                                "SQLITE_TOOBIG")
            if len(q.get("params") or ()) > MAX_BOUND_PARAMS:
                raise D1Failure(f"too many SQL variables: at most {MAX_BOUND_PARAMS} bound "
                                "parameters: SQLITE_RANGE")
        out: list[dict[str, Any]] = []
        budget = MAX_RESULT_BYTES
        try:
            with self.fenced(generation) as conn:
                for q in queries:
                    out.append(self._one(conn, q, fmt))
                    budget -= len(repr(out[-1]["results"]))
                    if budget < 0:
                        raise D1Failure(f"result too large: more than {MAX_RESULT_BYTES} "
                                        "bytes in one response")
        except sqlite3.Error as exc:
            if self._refused_transaction:
                raise D1Failure(TRANSACTION_REFUSED) from None
            raise D1Failure(_message(exc, self._current)) from None
        finally:
            self._refused_transaction = False
        return out

    def _one(self, conn: sqlite3.Connection, q: dict[str, Any], fmt: str) -> dict[str, Any]:
        started = time.perf_counter()
        before_rowid, before_size = self._state(conn)
        before_changes = conn.total_changes
        params = [_param(p) for p in (q.get("params") or ())]
        parts = statements(q["sql"])
        if not parts:
            raise D1Failure("SQL code did not contain a statement.")
        # Like workerd: every statement runs, the last one's rows are the result.
        if any(part in _PLATFORM_SQL for part in parts):
            raise D1Failure(_NOT_AUTHORIZED)
        if any(part in _PLATFORM_TRANSACTION_SQL for part in parts):
            raise D1Failure(TRANSACTION_REFUSED)
        for part in parts[:-1]:
            self._current = part
            conn.execute(part)
        self._current = parts[-1]
        cursor = conn.execute(parts[-1], params)
        columns = [d[0] for d in cursor.description or ()]
        rows = [[_cell(v) for v in row] for row in cursor.fetchall()]
        changes = conn.total_changes - before_changes
        after_rowid, after_size = self._state(conn)
        results: Any = ({"columns": columns, "rows": rows} if fmt == "ROWS_AND_COLUMNS"
                        else [dict(zip(columns, row, strict=True)) for row in rows])
        return {"success": True, "results": results, "meta": {
            "served_by": SERVED_BY,
            "duration": (time.perf_counter() - started) * 1000.0,
            "changes": changes,
            "last_row_id": after_rowid,
            "changed_db": changes != 0 or after_rowid != before_rowid
            or after_size != before_size,
            "size_after": after_size,
            # SQLite does not count rows touched for Python; these are the rows returned
            # and changed (docs/compatibility.md, ## D1).
            "rows_read": len(rows),
            "rows_written": changes,
        }}

    def dump(self, generation: int) -> list[str]:
        """The database as SQL (schema and rows), without the platform's tables."""
        with self.fenced(generation, tenant=False) as conn:
            return [line for line in conn.iterdump()
                    if FENCE_TABLE not in line and line not in ("BEGIN TRANSACTION;", "COMMIT;")]

    def backup_to(self, generation: int, target: Path) -> None:
        """A consistent copy through SQLite's online backup API."""
        with self.lock:
            conn = self._c()
            current = conn.execute(_FENCE_READ).fetchone()[0]
            if current != generation:
                raise Fenced(generation, current)
            dest = sqlite3.connect(target)
            try:
                conn.backup(dest)
            finally:
                dest.close()

    def restore_from(self, generation: int, source: Path) -> None:
        """Replace every table with the backup's, in one fenced transaction."""
        src = sqlite3.connect(source)
        try:
            lines = [line for line in src.iterdump()
                     if FENCE_TABLE not in line and line not in ("BEGIN TRANSACTION;",
                                                                 "COMMIT;")]
        finally:
            src.close()
        with self.fenced(generation, tenant=False) as conn:
            conn.execute("PRAGMA defer_foreign_keys=ON")
            objects = conn.execute(
                "SELECT type, name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' "
                f"AND name != '{FENCE_TABLE}' AND type IN ('table', 'view')").fetchall()
            for kind, name in objects:
                quoted = name.replace('"', '""')
                conn.execute(f'DROP {kind.upper()} IF EXISTS "{quoted}"')
            for line in lines:
                conn.execute(line)
