"""The D1 engine on real SQLite files: the generation fence, transactions, messages."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from services.d1.engine import TRANSACTION_REFUSED, D1Failure, Database, Fenced, statements

pytestmark = pytest.mark.unit


def _q(sql: str, *params: object) -> dict[str, object]:
    return {"sql": sql, "params": list(params)}


def test_a_new_owner_fences_the_old_one_off(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    old, new = Database(path), Database(path)  # two replicas, one shared file
    old.claim(1)
    old.query(1, [_q("CREATE TABLE t (v INTEGER)"), _q("INSERT INTO t VALUES (1)")],
              "ROWS_AND_COLUMNS")
    new.claim(2)
    with pytest.raises(Fenced) as refused:
        old.query(1, [_q("INSERT INTO t VALUES (2)")], "NONE")
    assert (refused.value.mine, refused.value.current) == (1, 2)
    with pytest.raises(Fenced):
        old.claim(1)  # the fence never goes down
    rows = new.query(2, [_q("SELECT v FROM t")], "ROWS_AND_COLUMNS")[0]["results"]
    assert rows == {"columns": ["v"], "rows": [[1]]}


def test_the_fence_bump_waits_for_a_transaction_in_flight(tmp_path: Path) -> None:
    # The old owner's transaction holds the write lock: it commits (before the bump),
    # and the new owner sees its row. Nothing of the old generation commits after it.
    path = tmp_path / "db.sqlite"
    old, new = Database(path), Database(path)
    old.claim(1)
    old.query(1, [_q("CREATE TABLE t (v INTEGER)")], "NONE")
    inside, release = threading.Event(), threading.Event()

    def slow_write() -> None:
        with old.fenced(1) as conn:
            conn.execute("INSERT INTO t VALUES (1)")
            inside.set()
            release.wait(10)

    writer = threading.Thread(target=slow_write)
    writer.start()
    assert inside.wait(10)
    bump = threading.Thread(target=new.claim, args=(2,))
    bump.start()
    release.set()
    writer.join(10)
    bump.join(30)
    assert new.query(2, [_q("SELECT v FROM t")], "ROWS_AND_COLUMNS")[0]["results"]["rows"] \
        == [[1]]
    with pytest.raises(Fenced):
        old.query(1, [_q("INSERT INTO t VALUES (2)")], "NONE")


def test_a_failed_statement_rolls_the_whole_request_back(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.sqlite")
    db.claim(1)
    db.query(1, [_q("CREATE TABLE t (v INTEGER UNIQUE)")], "NONE")
    with pytest.raises(D1Failure, match=r"UNIQUE constraint failed: t\.v: SQLITE_CONSTRAINT "
                                        r"\(extended: SQLITE_CONSTRAINT_UNIQUE\)"):
        db.query(1, [_q("INSERT INTO t VALUES (1)"), _q("INSERT INTO t VALUES (1)")], "NONE")
    assert db.query(1, [_q("SELECT count(*) AS n FROM t")], "NONE")[0]["results"] == [{"n": 0}]


def test_limits_and_reserved_tables(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.sqlite")
    db.claim(1)
    with pytest.raises(D1Failure, match="SQLITE_TOOBIG"):
        db.query(1, [_q("SELECT '" + "x" * 100_000 + "'")], "NONE")
    with pytest.raises(D1Failure, match="SQLITE_RANGE"):
        db.query(1, [_q("SELECT 1", *range(101))], "NONE")
    with pytest.raises(D1Failure, match="not authorized"):
        db.query(1, [_q("UPDATE _wdl_fence SET generation = 9")], "NONE")
    with pytest.raises(D1Failure, match=r"No SQL statements detected\."):
        db.query(1, [_q("   ")], "NONE")


def test_tenant_sql_never_reuses_the_platforms_unjudged_statements(tmp_path: Path) -> None:
    # The platform's fence statements are prepared without the authorizer and cached by
    # their text; a tenant sending exactly that text is refused instead of reusing them.
    db = Database(tmp_path / "db.sqlite")
    db.claim(1)
    for sql, params in (("UPDATE _wdl_fence SET generation = ? WHERE id = 1", [9]),
                        ("SELECT generation FROM _wdl_fence WHERE id = 1", []),
                        ("SELECT 1;SELECT generation FROM _wdl_fence WHERE id = 1", [])):
        with pytest.raises(D1Failure, match="not authorized"):
            db.query(1, [_q(sql, *params)], "NONE")
    db.query(1, [_q("CREATE TABLE t (v)"), _q("INSERT INTO t VALUES (1)")], "NONE")
    assert db.dump(1) == ["CREATE TABLE t (v);", 'INSERT INTO "t" VALUES(1);']
    # A dump runs unjudged; what it prepared is judged again for tenant SQL.
    with pytest.raises(D1Failure, match=r"prohibited|not authorized"):
        db.query(1, [_q("SELECT * FROM _wdl_fence")], "NONE")
    assert db.query(1, [_q("SELECT v FROM t")], "NONE")[0]["results"] == [{"v": 1}]


def test_blobs_and_booleans(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.sqlite")
    db.claim(1)
    out = db.query(1, [_q("SELECT ? AS b, ? AS t", [0, 255], True)], "NONE")[0]
    assert out["results"] == [{"b": [0, 255], "t": 1}]


def test_statements_split_where_sqlite_says_one_ends() -> None:
    assert statements("SELECT 1; SELECT ';'") == ["SELECT 1;", " SELECT ';'"]
    assert statements("-- only a comment\n") == []
    trigger = "CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1; END;"
    assert statements(trigger + " SELECT 2") == [trigger, " SELECT 2"]


@pytest.mark.parametrize("sql", ["COMMIT", "BEGIN", "BEGIN IMMEDIATE TRANSACTION", "END",
                                 "ROLLBACK", "SAVEPOINT s", "RELEASE s", "ROLLBACK TO s"])
def test_tenant_sql_cannot_end_the_fenced_transaction(tmp_path: Path, sql: str) -> None:
    # A COMMIT that ended the request's transaction would run the statements after it
    # outside the fence and not all-or-nothing: it is refused, and nothing commits.
    db = Database(tmp_path / "db.sqlite")
    db.claim(1)
    db.query(1, [_q("CREATE TABLE t (v INTEGER)")], "NONE")
    with pytest.raises(D1Failure) as refused:
        db.query(1, [_q("INSERT INTO t VALUES (1)"), _q(sql), _q("INSERT INTO t VALUES (2)")],
                 "NONE")
    assert str(refused.value) == TRANSACTION_REFUSED
    assert db.query(1, [_q("SELECT count(*) FROM t")], "ROWS_AND_COLUMNS")[0]["results"][
        "rows"] == [[0]]
    # The refusal does not stick to the next request's error.
    with pytest.raises(D1Failure) as other:
        db.query(1, [_q("SELECT * FROM nope")], "NONE")
    assert "no such table: nope" in str(other.value)


def test_a_database_stops_growing_at_its_size_bound(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.sqlite", max_bytes=256 * 1024)
    db.claim(1)
    db.query(1, [_q("CREATE TABLE t (v BLOB)")], "NONE")
    with pytest.raises(D1Failure) as full:
        for _ in range(64):
            db.query(1, [_q("INSERT INTO t VALUES (randomblob(16384))")], "NONE")
    assert "database or disk is full: SQLITE_FULL" in str(full.value)
    # The refused write changed nothing; the data stays readable, and deleting frees room.
    count = db.query(1, [_q("SELECT count(*) AS n FROM t")], "ROWS_AND_COLUMNS")[0]
    rows = count["results"]["rows"][0][0]
    assert 0 < rows < 16
    db.query(1, [_q("DELETE FROM t")], "NONE")
    db.query(1, [_q("INSERT INTO t VALUES (randomblob(16384))")], "NONE")
    # The tenant cannot lift the bound.
    with pytest.raises(D1Failure):
        db.query(1, [_q("PRAGMA max_page_count = 1000000")], "NONE")
