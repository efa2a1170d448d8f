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

Tenant SQL is confined to the database (confinement.py): the authorizer judges every
statement that is not the platform's own, the connection's limits bound it, and a
request that runs past the time limit is interrupted and rolled back.
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

from eventlog.private_files import private_dir, private_sqlite
from services.d1 import confinement, export

FENCE_TABLE = "_wdl_fence"
SERVED_BY = "wdl-d1"
MAX_STATEMENT_BYTES = 100_000
MAX_BOUND_PARAMS = 100
MAX_RESULT_BYTES = 32 * 1024 * 1024
_STATE = ("SELECT last_insert_rowid(), (SELECT page_count FROM pragma_page_count()), "
          "(SELECT page_size FROM pragma_page_size())")
_FENCE_READ = f"SELECT generation FROM {FENCE_TABLE} WHERE id = 1"
_FENCE_WRITE = f"UPDATE {FENCE_TABLE} SET generation = ? WHERE id = 1"
# SQLite's authorizer sees the table ALTER TABLE … RENAME TO renames, not the new name
# (workerd patches SQLite for it): after an ALTER, no name of the platform's may exist
# but the fence's. (Not LIKE: a tenant may make LIKE case-sensitive on the connection.)
_RESERVED_OBJECTS = ("SELECT name FROM sqlite_schema WHERE (lower(substr(name, 1, 5)) = "
                     f"'_wdl_' OR lower(substr(name, 1, 4)) = '_cf_') AND name != '{FENCE_TABLE}'")
_ALTER = re.compile(r"\balter\b", re.IGNORECASE)
_FENCE_CREATE = (f"CREATE TABLE IF NOT EXISTS {FENCE_TABLE} "
                 "(id INTEGER PRIMARY KEY CHECK (id = 1), generation INTEGER NOT NULL)")
_FENCE_INIT = f"INSERT OR IGNORE INTO {FENCE_TABLE} VALUES (1, 0)"
# Run once per connection with executescript, which prepares without the statement
# cache: nothing of it is left for a tenant statement of the same text to reuse.
_OPEN_SQL = ";".join((
    "PRAGMA journal_mode=WAL",
    # FULL: the WAL is fsynced at every commit, so an acknowledged write survives
    # SIGKILL and power loss (NORMAL would only survive the process dying).
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON", _FENCE_CREATE, _FENCE_INIT))
# The authorizer stays installed (installing one expires every prepared statement,
# which cost a re-prepare of each statement per request) and only judges tenant SQL.
# The platform's own statements are prepared unjudged and cached by their text, so a
# tenant statement with exactly that text would reuse them: it is refused up front.
_PLATFORM_SQL = frozenset({_FENCE_READ, _FENCE_WRITE, _STATE, _RESERVED_OBJECTS})
_NOT_AUTHORIZED = confinement.NOT_AUTHORIZED
# Every request is one fenced transaction: a tenant COMMIT would end it early and run the
# statements after it unfenced and not all-or-nothing. workerd refuses these statements in
# its SQLite-backed storage (which Miniflare's D1 runs on) with this text.
TRANSACTION_REFUSED = (
    "To execute a transaction, please use the state.storage.transaction() or "
    "state.storage.transactionSync() APIs instead of the SQL BEGIN TRANSACTION or SAVEPOINT "
    "statements. The JavaScript API is safer because it will automatically roll back on "
    "exceptions, and because it interacts correctly with Durable Objects' automatic atomic "
    "write coalescing.")
# The platform's own transaction statements, prepared unjudged and cached by their text
# like _PLATFORM_SQL: a tenant statement of exactly that text would skip the authorizer.
_PLATFORM_TRANSACTION_SQL = frozenset({"BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"})
_COMMENT_LINES = re.compile(r"^\s+--.*", re.MULTILINE)


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
    text = confinement.function_offset(text, sql)
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


def _row_size(cells: list[Any]) -> int:
    return sum(len(c) if isinstance(c, str | list) else 8 for c in cells)


class Database:
    """Opened by its owner; every method runs on a worker thread (SQLite blocks)."""

    def __init__(self, path: Path, *,
                 timeout_ms: int = confinement.DEFAULT_TIMEOUT_MS,
                 max_bytes: int = confinement.DEFAULT_MAX_BYTES) -> None:
        self.path = path
        self.timeout_s = timeout_ms / 1000
        self.max_bytes = max_bytes
        self.lock = threading.Lock()
        self.conn: sqlite3.Connection | None = None
        self._current = ""  # the statement running (its text places a syntax error)
        self._judged = False  # tenant SQL (or work on the tenant's data) is running
        self._refused_transaction = False  # the authorizer refused BEGIN/COMMIT/SAVEPOINT
        self._deadline = 0.0  # time.monotonic() past which the request is interrupted
        self._timed_out = False  # the progress handler interrupted the request
        self._hidden = ""  # a refused read of a table Cloudflare's SQLite does not have

    def open(self) -> None:
        private_dir(self.path.parent)
        private_sqlite(self.path)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=30.0)
        try:
            confinement.apply_limits(conn, confinement.LIMITS)
            confinement.disarm(conn)
            # Installed once and never removed (installing one expires every prepared
            # statement); `_judged` says whether it judges what is being prepared.
            conn.set_authorizer(self._authorize)
            conn.set_progress_handler(self._progress, confinement.PROGRESS_STEPS)
            conn.executescript(_OPEN_SQL)
            # The size bound: past it a write fails with SQLITE_FULL and changes nothing.
            # Not a pragma the tenant may run (confinement.ALLOWED_PRAGMAS), so it stays.
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {max(1, int(self.max_bytes) // page)}")
        except BaseException:
            conn.close()
            raise
        self.conn = conn

    def _authorize(self, action: int, arg1: str | None, arg2: str | None, db: str | None,
                   trigger: str | None) -> int:
        if confinement.outside_the_file(action, arg1, db):
            return sqlite3.SQLITE_DENY
        if not self._judged or confinement.tenant_may(action, arg1, arg2, db):
            return sqlite3.SQLITE_OK
        if confinement.is_transaction(action):
            self._refused_transaction = True
        elif action == sqlite3.SQLITE_READ and (arg1 or "").lower() in confinement.HIDDEN_TABLES:
            self._hidden = arg1 or ""
        return sqlite3.SQLITE_DENY

    def _progress(self) -> int:
        if self._deadline and time.monotonic() > self._deadline:
            self._timed_out = True
            return 1  # SQLITE_INTERRUPT: the statement stops, the request rolls back
        return 0

    @contextlib.contextmanager
    def _platform(self) -> Iterator[None]:
        """The platform's own statements inside a judged transaction (prepared unjudged;
        their texts are refused as tenant SQL, see _PLATFORM_SQL)."""
        judged, self._judged = self._judged, False
        try:
            yield
        finally:
            self._judged = judged

    def close(self) -> None:
        with self.lock:  # after the request in flight (bounded by the time limit)
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
        The authorizer judges every statement run in it. `tenant`: tenant SQL, under the
        time limit; otherwise the platform's work on the tenant's data (export,
        restore), which copies what is stored whatever its size: no time limit, and
        SQLite's own size limits."""
        with self.lock:
            conn = self._c()
            conn.execute("BEGIN IMMEDIATE")
            try:
                current = conn.execute(_FENCE_READ).fetchone()[0]
                if current != generation:
                    raise Fenced(generation, current)
                if tenant:
                    self._deadline = time.monotonic() + self.timeout_s
                else:
                    confinement.apply_limits(conn, confinement.PLATFORM_LIMITS)
                self._judged = True
                try:
                    yield conn
                finally:
                    self._judged = False
                    self._deadline = 0.0
                    if not tenant:
                        confinement.apply_limits(conn, confinement.LIMITS)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _state(self, conn: sqlite3.Connection) -> tuple[int, int]:
        """(last_insert_rowid, database size in bytes) in one statement: this runs
        twice per statement, on the point-read path."""
        with self._platform():
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
        budget = [MAX_RESULT_BYTES]
        try:
            with self.fenced(generation) as conn:
                for q in queries:
                    out.append(self._one(conn, q, fmt, budget))
        except sqlite3.Error as exc:
            if self._timed_out:
                raise D1Failure(confinement.TIMEOUT_MESSAGE) from None
            if self._refused_transaction:
                raise D1Failure(TRANSACTION_REFUSED) from None
            if self._hidden:
                raise D1Failure(f"no such table: {self._hidden}: SQLITE_ERROR") from None
            raise D1Failure(_message(exc, self._current)) from None
        finally:
            self._refused_transaction = False
            self._timed_out = False
            self._hidden = ""
        return out

    def _one(self, conn: sqlite3.Connection, q: dict[str, Any], fmt: str,
             budget: list[int]) -> dict[str, Any]:
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
        rows: list[list[Any]] = []
        # Row by row: a result past the budget stops before it is all in memory.
        for row in cursor:
            cells = [_cell(v) for v in row]
            budget[0] -= _row_size(cells)
            if budget[0] < 0:
                raise D1Failure(f"result too large: more than {MAX_RESULT_BYTES} bytes in "
                                "one response")
            rows.append(cells)
        if any(_ALTER.search(part) for part in parts):
            with self._platform():
                if conn.execute(_RESERVED_OBJECTS).fetchone() is not None:
                    raise D1Failure(_NOT_AUTHORIZED)
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
        try:
            with self.fenced(generation, tenant=False) as conn:
                return export.dump(conn)
        except export.ExportRefused as exc:
            raise D1Failure(str(exc)) from None
        except sqlite3.Error as exc:
            raise D1Failure(_message(exc, "")) from None

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
        src = export.open_backup(source)
        try:
            with self.fenced(generation, tenant=False) as conn:
                export.restore(conn, src)
        except sqlite3.Error as exc:
            raise D1Failure(_message(exc, "")) from None
        finally:
            src.close()
