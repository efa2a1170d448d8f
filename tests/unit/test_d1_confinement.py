"""D1 confinement on real SQLite files: the authorizer's verdicts, the connection's
limits, the time limit, and the platform's own statements (fence, export, restore)
still working on a confined connection."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from eventlog.private_files import private_dir, private_sqlite
from services.d1 import confinement, engine
from services.d1.confinement import tenant_may
from services.d1.engine import D1Failure, Database, Fenced
from services.d1.owner import OVERLOADED, Owned, Owner

pytestmark = pytest.mark.unit


def _q(sql: str, *params: object) -> dict[str, object]:
    return {"sql": sql, "params": list(params)}


def _db(tmp_path: Path, **kw: Any) -> Database:
    db = Database(tmp_path / "d1" / "ns" / "db.sqlite", **kw)
    db.claim(1)
    return db


def _rows(db: Database, sql: str, *params: object) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = db.query(1, [_q(sql, *params)], "ARRAY_OF_OBJECTS")[0][
        "results"]
    return rows


def _refused(db: Database, sql: str, *params: object) -> str:
    with pytest.raises(D1Failure) as refused:
        db.query(1, [_q(sql, *params)], "NONE")
    return str(refused.value)


S = sqlite3
ALLOWED = [
    (S.SQLITE_SELECT, None, None, None), (S.SQLITE_READ, "t", "a", "main"),
    (S.SQLITE_READ, "sqlite_master", "sql", "main"), (S.SQLITE_READ, "t", "a", "temp"),
    (S.SQLITE_INSERT, "t", None, "main"), (S.SQLITE_UPDATE, "t", "a", "main"),
    (S.SQLITE_CREATE_INDEX, "i", "t", "main"), (S.SQLITE_ALTER_TABLE, "main", "t", None),
    (S.SQLITE_PRAGMA, "table_info", "t", None), (S.SQLITE_PRAGMA, "TABLE_INFO", "t", "main"),
    (S.SQLITE_PRAGMA, "table_list", None, None), (S.SQLITE_PRAGMA, "foreign_keys", "ON", None),
    (S.SQLITE_PRAGMA, "foreign_keys", "'off'", None), (S.SQLITE_PRAGMA, "foreign_keys", None, None),
    (S.SQLITE_PRAGMA, "optimize", "0x10002", None), (S.SQLITE_PRAGMA, "quick_check", "10", None),
    (S.SQLITE_PRAGMA, "quick_check", "t", None), (S.SQLITE_PRAGMA, "data_version", None, None),
    (S.SQLITE_FUNCTION, None, "json_extract", None), (S.SQLITE_FUNCTION, None, "->>", None),
    (S.SQLITE_CREATE_VTABLE, "f", "fts5", "main"), (S.SQLITE_CREATE_VTABLE, "r", "RTREE", "main"),
    (S.SQLITE_ANALYZE, "_wdl_fence", None, "main"), (S.SQLITE_RECURSIVE, None, None, None),
]
DENIED = [
    (S.SQLITE_ATTACH, "'/any/file.db'", None, None), (S.SQLITE_DETACH, "v", None, None),
    (S.SQLITE_READ, "t", "a", "v"), (S.SQLITE_INSERT, "t", None, "vacuum_db"),
    (S.SQLITE_ALTER_TABLE, "v", "t", None), (S.SQLITE_ALTER_TABLE, "main", "_wdl_fence", None),
    (S.SQLITE_READ, "_wdl_fence", "generation", "main"), (S.SQLITE_READ, "_CF_KV", "k", "main"),
    (S.SQLITE_UPDATE, "_wdl_fence", "generation", "main"), (S.SQLITE_INSERT, "t", None, "temp"),
    (S.SQLITE_READ, "dbstat", "name", "main"), (S.SQLITE_READ, "sqlite_stmt", "sql", "main"),
    (S.SQLITE_CREATE_INDEX, "i", "_wdl_fence", "main"), (S.SQLITE_CREATE_TEMP_TABLE, "x", None,
                                                          "temp"),
    (S.SQLITE_CREATE_TRIGGER, "x", "_wdl_fence", "main"),
    (S.SQLITE_TRANSACTION, "COMMIT", None, None), (S.SQLITE_SAVEPOINT, "BEGIN", "s", None),
    (S.SQLITE_PRAGMA, "database_list", None, None), (S.SQLITE_PRAGMA, "journal_mode", None, None),
    (S.SQLITE_PRAGMA, "writable_schema", "ON", None),
    (S.SQLITE_PRAGMA, "temp_store_directory", "'/tmp'", None),
    (S.SQLITE_PRAGMA, "mmap_size", "1000", None), (S.SQLITE_PRAGMA, "table_info", None, None),
    (S.SQLITE_PRAGMA, "table_info", "_wdl_fence", None),
    (S.SQLITE_PRAGMA, "table_info", "t", "v"), (S.SQLITE_PRAGMA, "foreign_keys", "2", None),
    (S.SQLITE_PRAGMA, "optimize", "x", None), (S.SQLITE_PRAGMA, "page_size", "512", None),
    (S.SQLITE_PRAGMA, "quick_check", "_wdl_fence", None),
    (S.SQLITE_FUNCTION, None, "sqlite_version", None),
    (S.SQLITE_FUNCTION, None, "fts3_tokenizer", None), (S.SQLITE_FUNCTION, None, None, None),
    (S.SQLITE_CREATE_VTABLE, "f", "fts4", "main"), (S.SQLITE_CREATE_VTABLE, "_wdl_f", "fts5",
                                                     "main"),
    (0, "t", "f", None), (9999, None, None, None),  # COPY (no longer used), unknown
]


@pytest.mark.parametrize(("action", "arg1", "arg2", "db"), ALLOWED)
def test_the_authorizer_allows(action: int, arg1: str | None, arg2: str | None,
                               db: str | None) -> None:
    assert tenant_may(action, arg1, arg2, db)


@pytest.mark.parametrize(("action", "arg1", "arg2", "db"), DENIED)
def test_the_authorizer_denies(action: int, arg1: str | None, arg2: str | None,
                               db: str | None) -> None:
    assert not tenant_may(action, arg1, arg2, db)


def test_the_database_is_one_file_and_names_no_path(tmp_path: Path) -> None:
    db = _db(tmp_path)
    db.query(1, [_q("CREATE TABLE t (a)"), _q("INSERT INTO t VALUES ('mine')")], "NONE")
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (a)")
        conn.execute("INSERT INTO t VALUES ('theirs')")
    for sql in (f"ATTACH '{other}' AS v", f"ATTACH 'file:{other}?mode=ro' AS v",
                f"attach database 'file://{other}' as v", "ATTACH ? AS v",
                f"ATTACH '{tmp_path}/new.db' AS c; CREATE TABLE c.x (a)",
                f"VACUUM INTO '{tmp_path}/copy.db'", "PRAGMA database_list",
                "SELECT file FROM pragma_database_list", "pragma MAIN.Database_List"):
        params = [str(other)] if "?" in sql else []
        message = _refused(db, sql, *params)
        assert str(tmp_path) not in message
        assert "not authorized" in message or "cannot VACUUM" in message, (sql, message)
    assert not (tmp_path / "new.db").exists() and not (tmp_path / "copy.db").exists()
    assert "no such table: v.t" in _refused(db, "SELECT * FROM v.t")
    assert db.conn is not None
    assert db.conn.getlimit(sqlite3.SQLITE_LIMIT_ATTACHED) == 0
    assert [r[1] for r in db.conn.execute("PRAGMA database_list")] == ["main"]
    assert _rows(db, "SELECT a FROM t") == [{"a": "mine"}]


def test_messages_are_workerds(tmp_path: Path) -> None:
    db = _db(tmp_path)
    assert _refused(db, "PRAGMA journal_mode = DELETE") == "not authorized: SQLITE_AUTH"
    assert _refused(db, "SELECT sqlite_version()") == (
        "not authorized to use function: sqlite_version at offset 7: SQLITE_ERROR")
    assert _refused(db, "SELECT nope(1)") == "no such function: nope at offset 7: SQLITE_ERROR"
    assert _refused(db, "SELECT * FROM dbstat") == "no such table: dbstat: SQLITE_ERROR"
    assert _refused(db, "SELECT load_extension('x')") == "not authorized: SQLITE_ERROR"
    assert _refused(db, "SELECT length(zeroblob(5000000))") == (
        "string or blob too big: SQLITE_TOOBIG")
    assert "too many terms in compound SELECT" in _refused(
        db, " UNION ".join(["SELECT 1"] * 6))


def test_refused_functions_stay_refused_where_the_authorizer_is_not_asked(
        tmp_path: Path) -> None:
    # SQLite evaluates a column's DEFAULT without asking the authorizer about its calls.
    db = _db(tmp_path)
    for call in ("sqlite_version()", "fts3_tokenizer('simple')",
                 "fts3_tokenizer('simple', x'4141414141414141')",
                 "sqlite_compileoption_get(0)", "sqlite_source_id()"):
        db.query(1, [_q(f"CREATE TABLE d (a DEFAULT ({call}), b)")], "NONE")
        assert "SQLITE_ERROR" in _refused(db, "INSERT INTO d (b) VALUES (1)")
        db.query(1, [_q("DROP TABLE d")], "NONE")
    # Where the authorizer is asked (a statement, a view, a trigger), it refuses.
    db.query(1, [_q("CREATE VIEW v AS SELECT sqlite_version() AS x")], "NONE")
    assert "not authorized to use function: sqlite_version" in _refused(db, "SELECT * FROM v")
    # An FTS5 table over the platform's table reads nothing of it.
    db.query(1, [_q("CREATE VIRTUAL TABLE f USING fts5(generation, content='_wdl_fence', "
                    "content_rowid='id')")], "NONE")
    assert "SQLITE_AUTH" in _refused(db, "SELECT * FROM f")
    assert "SQLITE_AUTH" in _refused(db, "INSERT INTO f(f) VALUES ('rebuild')")
    # Shadow tables in the platform's names are refused with their virtual table.
    assert "not authorized" in _refused(db, "CREATE VIRTUAL TABLE _wdl USING fts5(a)")
    assert "not authorized" in _refused(db, "CREATE VIRTUAL TABLE _cf USING rtree(id, a, b)")


def test_the_allowed_pragmas_work(tmp_path: Path) -> None:
    db = _db(tmp_path)
    db.query(1, [_q("CREATE TABLE t (a PRIMARY KEY, b REFERENCES t (a))")], "NONE")
    assert _rows(db, "PRAGMA table_info(t)")[0]["name"] == "a"
    assert _rows(db, "SELECT name FROM pragma_table_info('t')") == [{"name": "a"},
                                                                      {"name": "b"}]
    assert _rows(db, "PRAGMA quick_check") == [{"quick_check": "ok"}]
    assert _rows(db, "PRAGMA foreign_keys") == [{"foreign_keys": 1}]
    for sql in ("PRAGMA table_list", "PRAGMA index_list(t)", "PRAGMA foreign_key_list(t)",
                "PRAGMA foreign_key_check", "PRAGMA optimize", "PRAGMA table_xinfo(t)",
                "PRAGMA foreign_keys = ON", "PRAGMA defer_foreign_keys = true",
                "PRAGMA legacy_alter_table = off", "PRAGMA data_version", "PRAGMA page_size",
                "ANALYZE", "CREATE VIRTUAL TABLE f USING fts5(a)",
                "CREATE VIRTUAL TABLE r USING rtree(id, x0, x1)",
                "ALTER TABLE t ADD COLUMN c", "ALTER TABLE t RENAME COLUMN c TO d",
                "ALTER TABLE t DROP COLUMN d"):
        db.query(1, [_q(sql)], "NONE")


def test_renaming_into_the_platforms_names_is_refused(tmp_path: Path) -> None:
    db = _db(tmp_path)
    db.query(1, [_q("CREATE TABLE t (a)")], "NONE")
    for name in ("_wdl_t", '"_WDL_T"', "_cf_KV", "[_Cf_x]"):
        assert _refused(db, f"ALTER TABLE t RENAME TO {name}") == "not authorized: SQLITE_AUTH"
    # ... however LIKE is set on the connection.
    db.query(1, [_q("PRAGMA case_sensitive_like = ON")], "NONE")
    assert _refused(db, "ALTER /* x */ TABLE t RENAME TO _WDL_T") == "not authorized: SQLITE_AUTH"
    assert _rows(db, "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 't'") == [
        {"name": "t"}]


def test_a_slow_request_is_interrupted_and_rolled_back(tmp_path: Path) -> None:
    db = _db(tmp_path, timeout_ms=300)
    db.query(1, [_q("CREATE TABLE t (a)")], "NONE")
    slow = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
            "SELECT count(*) FROM c")
    for queries in ([_q(slow)], [_q("INSERT INTO t VALUES (1)"), _q(slow)],
                    [_q(f"INSERT INTO t SELECT x FROM ({slow.replace('count(*)', 'x')})")]):
        started = time.monotonic()
        with pytest.raises(D1Failure) as refused:
            db.query(1, queries, "NONE")
        assert str(refused.value) == confinement.TIMEOUT_MESSAGE
        assert time.monotonic() - started < 5
    assert _rows(db, "SELECT count(*) AS n FROM t") == [{"n": 0}]
    # The limit is per request: the next one has its own.
    assert _rows(db, "SELECT 1 AS one") == [{"one": 1}]
    assert confinement.DEFAULT_TIMEOUT_MS == 30_000  # Cloudflare's D1 query duration


def test_a_result_past_the_budget_stops_early(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    db = _db(tmp_path)
    monkeypatch.setattr(engine, "MAX_RESULT_BYTES", 10_000)
    endless = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
               "SELECT x, zeroblob(1000) FROM c")
    started = time.monotonic()
    assert "result too large" in _refused(db, endless)
    assert time.monotonic() - started < 2


def test_the_platforms_statements_still_work_and_are_not_reused(tmp_path: Path) -> None:
    db = _db(tmp_path)
    # Settings a tenant may change on its connection change nothing of the platform's.
    for sql in ("PRAGMA reverse_unordered_selects = ON", "PRAGMA case_sensitive_like = ON",
                "PRAGMA recursive_triggers = ON", "PRAGMA ignore_check_constraints = ON"):
        db.query(1, [_q(sql)], "NONE")
    db.claim(2)
    with pytest.raises(Fenced):
        db.query(1, [_q("SELECT 1")], "NONE")
    assert db.query(2, [_q("SELECT 1 AS one")], "NONE")[0]["results"] == [{"one": 1}]
    # The texts the platform prepares unjudged are refused as tenant SQL ...
    for sql in (engine._STATE, engine._FENCE_READ, engine._RESERVED_OBJECTS):
        with pytest.raises(D1Failure, match="not authorized"):
            db.query(2, [_q(sql)], "NONE")
    # ... but what it ran once when opening is not cached: a tenant may send it.
    db.query(2, [_q("PRAGMA foreign_keys=ON")], "NONE")


TRICKY = "x'||(SELECT generation FROM _wdl_fence)||'"


def test_export_and_restore_run_judged_and_copy_everything(tmp_path: Path) -> None:
    db = _db(tmp_path)
    quoted = TRICKY.replace('"', '""')
    db.query(1, [_q(f'CREATE TABLE "{quoted}" ("a\'b" TEXT, g AS (upper("a\'b")))'),
                 _q(f'INSERT INTO "{quoted}" VALUES (?)', "it's"),
                 _q("CREATE TABLE seq (id INTEGER PRIMARY KEY AUTOINCREMENT, v BLOB)"),
                 _q("INSERT INTO seq (v) VALUES (x'00ff'), (NULL)"),
                 _q("CREATE INDEX seq_v ON seq (v)"),
                 _q("CREATE VIEW vv AS SELECT id FROM seq"),
                 _q("CREATE TRIGGER tr AFTER INSERT ON seq BEGIN SELECT 1; END")], "NONE")
    # The name is a name (Python's iterdump pasted it into a string literal, running the
    # SELECT in it); the generated column is left to SQLite.
    assert db.dump(1) == [
        f'CREATE TABLE "{quoted}" ("a\'b" TEXT, g AS (upper("a\'b")));',
        f'INSERT INTO "{quoted}"("a\'b") VALUES(\'it\'\'s\');',
        "CREATE TABLE seq (id INTEGER PRIMARY KEY AUTOINCREMENT, v BLOB);",
        'INSERT INTO "seq" VALUES(1,X\'00FF\');', 'INSERT INTO "seq" VALUES(2,NULL);',
        "CREATE INDEX seq_v ON seq (v);", "CREATE VIEW vv AS SELECT id FROM seq;",
        "CREATE TRIGGER tr AFTER INSERT ON seq BEGIN SELECT 1; END;",
        "DELETE FROM sqlite_sequence;", "INSERT INTO sqlite_sequence VALUES('seq',2);"]
    # A backup, the database changed, then restored: everything back, fence untouched.
    backup = tmp_path / "backup.sqlite"
    db.backup_to(1, backup)
    db.query(1, [_q("DROP VIEW vv"), _q("DELETE FROM seq"), _q("CREATE TABLE extra (a)"),
                 _q("CREATE VIRTUAL TABLE f USING fts5(body)"),
                 _q("INSERT INTO f VALUES ('later')")], "NONE")
    db.restore_from(1, backup)
    assert _rows(db, "SELECT id, v FROM seq") == [{"id": 1, "v": [0, 255]}, {"id": 2, "v": None}]
    assert _rows(db, "SELECT id FROM vv") == [{"id": 1}, {"id": 2}]
    assert _rows(db, f'SELECT g FROM "{quoted}"') == [{"g": "IT'S"}]
    assert _rows(db, "SELECT name FROM sqlite_master WHERE name IN ('extra', 'f')") == []
    assert _rows(db, "SELECT seq FROM sqlite_sequence WHERE name = 'seq'") == [{"seq": 2}]
    assert db.query(1, [_q("SELECT 1")], "NONE")  # the fence still holds generation 1


def test_restore_brings_virtual_tables_back_and_export_refuses_them(tmp_path: Path) -> None:
    db = _db(tmp_path)
    db.query(1, [_q("CREATE VIRTUAL TABLE f USING fts5(body)"),
                 _q("INSERT INTO f VALUES ('hello world'), ('other words')"),
                 _q("CREATE VIRTUAL TABLE r USING rtree(id, x0, x1)"),
                 _q("INSERT INTO r VALUES (1, 0, 10)")], "NONE")
    with pytest.raises(D1Failure, match="cannot export databases with Virtual Tables"):
        db.dump(1)
    backup = tmp_path / "backup.sqlite"
    db.backup_to(1, backup)
    db.query(1, [_q("DROP TABLE f"), _q("DELETE FROM r")], "NONE")
    db.restore_from(1, backup)
    assert _rows(db, "SELECT body FROM f WHERE f MATCH 'hello'") == [{"body": "hello world"}]
    assert _rows(db, "SELECT id FROM r WHERE x0 <= 5 AND x1 >= 5") == [{"id": 1}]
    assert _rows(db, "PRAGMA quick_check") == [{"quick_check": "ok"}]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_files_are_private(tmp_path: Path) -> None:
    db = _db(tmp_path)
    db.query(1, [_q("CREATE TABLE t (a)"), _q("INSERT INTO t VALUES (1)")], "NONE")
    assert _mode(tmp_path / "d1" / "ns") == 0o700
    files = list((tmp_path / "d1" / "ns").iterdir())
    assert {p.name for p in files} >= {"db.sqlite", "db.sqlite-wal", "db.sqlite-shm"}
    assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}


def test_private_files_tighten_what_an_older_version_made(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    (folder / "x.sqlite").write_bytes(b"")
    (folder / "x.sqlite").chmod(0o644)
    (folder / "x.sqlite-wal").write_bytes(b"")
    (folder / "x.sqlite-wal").chmod(0o644)
    private_dir(folder)
    private_sqlite(folder / "x.sqlite")
    private_sqlite(folder / "new" / "y.sqlite")
    assert _mode(folder) == 0o700
    assert _mode(folder / "x.sqlite") == _mode(folder / "x.sqlite-wal") == 0o600
    assert _mode(folder / "new" / "y.sqlite") == 0o600
    # A shared (sticky) directory is never closed.
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    private_dir(shared)
    assert _mode(shared) == 0o1777


async def test_one_namespace_cannot_take_every_d1_thread(tmp_path: Path) -> None:
    owner = Owner(leases=None, reader=None, root=tmp_path, host="127.0.0.1",  # type: ignore[arg-type]
                  port=0, token="t", threads=4)
    owner._executor = ThreadPoolExecutor(max_workers=owner.threads)
    release = threading.Event()
    running: list[str] = []

    def blocked(database: Database, generation: int) -> str:
        running.append("slow")
        release.wait(10)
        return "slow"

    def quick(database: Database, generation: int) -> str:
        return "quick"

    def owned(name: str) -> Owned:
        return Owned(Database(tmp_path / f"{name}.sqlite"), 1, name, 0.0)

    try:
        # The attacker floods two databases: one thread each at most (a quarter of four).
        flood = [asyncio.ensure_future(owner._work(("attacker", f"db{i % 3}"), owned(f"a{i}"),
                                                   blocked)) for i in range(12)]
        await asyncio.sleep(0.2)
        assert len(running) == owner.per_namespace == 1
        # Another namespace runs at once.
        assert await asyncio.wait_for(owner._work(("victim", "db"), owned("v"), quick),
                                      2) == "quick"
        # One database queues at most MAX_QUEUED requests.
        extra = [asyncio.ensure_future(owner._work(("attacker", "db0"), owned("q"), quick))
                 for _ in range(70)]
        await asyncio.sleep(0.1)
        refused = [f for f in extra if f.done() and isinstance(f.exception(), D1Failure)]
        assert refused and str(refused[0].exception()) == OVERLOADED
    finally:
        release.set()
        await asyncio.gather(*flood, *extra, return_exceptions=True)
        owner._executor.shutdown(wait=True)
