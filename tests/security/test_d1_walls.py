"""The Storage wall: a tenant's D1 SQL reaches its own database and nothing else.

The attacker holds a deployer token scoped to its namespace and a worker with two D1
databases, a Durable Object and a worker loader. From `env.DB` (`prepare` + `all`,
`run`, `raw`, `first`, `bind`, `batch`, `exec`), from a Durable Object calling its D1
binding, from a loader child handed the binding, and through `wdl d1 execute` and
`wdl d1 migrations apply`, it tries to read the data directory's path, to attach the
victim's D1 file and every other SQLite file of the platform (the embedded log, audit,
KV, queue and workflow files under `wdl dev`, Durable Objects' files), to create files,
to change the connection's settings, to reach the platform's tables and to hold its
database (and D1's threads) with slow SQL. Each attempt fails with a clear error like
Cloudflare's, changes nothing, creates no file and names no host path; the victim
reads back intact; the attacker's own database keeps working.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.security.rig import ATTACKER, VICTIM, Walls

pytestmark = pytest.mark.security

# A short time limit keeps the slow-statement attacks short (the default is D1's 30 s).
WALLS_ENV = {"WDL_D1_TIMEOUT_MS": "2000"}
TIMEOUT = "D1 DB storage operation exceeded timeout which caused object to be reset."
NOT_AUTHORIZED = "not authorized"
HOWS = ("all", "raw", "first", "run", "exec", "batch", "batch-last")
# A statement that runs far longer than the limit (minutes on this machine).
SLOW = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 400000000) "
        "SELECT count(*) AS n FROM c")

PROBE_TOML = """
worker_loaders = [{binding = "LOADER"}]

[[d1_databases]]
binding = "DB"
database_name = "attack-db"

[[d1_databases]]
binding = "DB2"
database_name = "attack-db2"

[[durable_objects.bindings]]
name = "PROBE"
class_name = "Probe"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Probe"]
"""

PROBE_JS = r"""
import { DurableObject } from "cloudflare:workers";

async function run(db, how, sql, params) {
  try {
    let value;
    const stmt = () => db.prepare(sql).bind(...params);
    if (how === "exec") value = await db.exec(sql);
    else if (how === "batch") value = await db.batch([stmt()]);
    else if (how === "batch-last") value = await db.batch([db.prepare("SELECT 1 AS one"), stmt()]);
    else if (how === "raw") value = await stmt().raw({ columnNames: true });
    else if (how === "first") value = await stmt().first();
    else if (how === "run") value = await stmt().run();
    else value = await stmt().all();
    return { ok: true, value };
  } catch (e) {
    return { ok: false, error: String(e?.message ?? e) };
  }
}

const CHILD = `
export default {
  async fetch(request, env) {
    const { how, sql } = await request.json();
    try {
      const value = how === "exec" ? await env.DB.exec(sql) : await env.DB.prepare(sql).all();
      return Response.json({ ok: true, value });
    } catch (e) {
      return Response.json({ ok: false, error: String(e?.message ?? e) });
    }
  },
};`;

export class Probe extends DurableObject {
  d1(how, sql, params) { return run(this.env.DB, how, sql, params); }
  own(sql) {
    try {
      return { ok: true, value: this.ctx.storage.sql.exec(sql).toArray() };
    } catch (e) {
      return { ok: false, error: String(e?.message ?? e) };
    }
  }
}

export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname;
    const { how = "all", sql, params = [], db = "DB" } = await request.json();
    if (path === "/sql") return Response.json(await run(env[db], how, sql, params));
    if (path === "/do") return Response.json(await env.PROBE.getByName("p").d1(how, sql, params));
    if (path === "/do-own") return Response.json(await env.PROBE.getByName("p").own(sql));
    if (path === "/child") {
      const child = env.LOADER.get("d1-child", async () => ({
        compatibilityDate: "2025-11-17", mainModule: "child.js", modules: { "child.js": CHILD },
        env: { DB: env.DB }, globalOutbound: null,
      }));
      return child.getEntrypoint().fetch("http://child/", {
        method: "POST", body: JSON.stringify({ how, sql }),
      });
    }
    return new Response("no such probe", { status: 404 });
  },
};
"""


@dataclass
class Probe:
    walls: Walls
    victim_file: Path   # the victim's D1 file
    own_files: tuple[Path, ...]  # the attacker's D1 files

    async def sql(self, sql: str, how: str = "all", *, where: str = "/sql", db: str = "DB",
                  params: Iterable[Any] = ()) -> dict[str, Any]:
        r = await self.walls.attack("sqlprobe", where, method="POST", timeout=120, json={
            "how": how, "sql": sql, "db": db, "params": list(params)})
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        # No answer, refused or not, names a host path (but the attacker's own SQL, which
        # an error quotes back as Cloudflare's does: "Error in line 1: <sql>: …").
        said = str(answer["error"]).replace(sql, "") if "error" in answer else json.dumps(
            answer)
        for path in {str(self.walls.data_dir), str(self.walls.data_dir.resolve())}:
            assert path not in said, said
        return answer

    async def refused(self, sql: str, how: str = "all", needle: str = NOT_AUTHORIZED,
                      **kw: Any) -> str:
        answer = await self.sql(sql, how, **kw)
        assert not answer["ok"], (sql, how, answer)
        assert needle in answer["error"], (sql, how, answer)
        assert answer["error"].startswith(("D1_ERROR: ", "D1_EXEC_ERROR: ")), answer
        return str(answer["error"])

    async def rows(self, sql: str, **kw: Any) -> list[dict[str, Any]]:
        answer = await self.sql(sql, **kw)
        assert answer["ok"], (sql, answer)
        results: list[dict[str, Any]] = answer["value"]["results"]
        return results

    async def own_database_works(self) -> None:
        """The attacker's own database, after the attacks: as it was, and writable."""
        assert await self.rows("SELECT a FROM mine ORDER BY rowid") == [{"a": "attacker-row"}]
        assert await self.rows("SELECT name FROM pragma_table_info('mine')") == [{"name": "a"}]
        assert await self.rows("PRAGMA table_info(mine)") == [
            {"cid": 0, "name": "a", "type": "TEXT", "notnull": 0, "dflt_value": None, "pk": 0}]
        answer = await self.sql("INSERT INTO mine VALUES ('more') RETURNING a")
        assert answer["ok"] and answer["value"]["results"] == [{"a": "more"}], answer
        assert (await self.sql("DELETE FROM mine WHERE a = 'more'", "run"))["ok"]
        assert await self.rows("SELECT count(*) AS n FROM mine") == [{"n": 1}]


def _d1_file(walls: Walls, ns: str, database_id: str) -> Path:
    return walls.data_dir / "d1" / ns / f"{database_id}.sqlite"


@pytest.fixture(scope="module")
async def probe(walls: Walls) -> Probe:
    await walls.attacker.deploy_js("sqlprobe", PROBE_JS, PROBE_TOML)
    victim = {d["name"]: d["database_id"] for d in (await walls.admin.wdl(
        "d1", "list", "--ns", VICTIM, "--json")).json()}
    mine = {d["name"]: d["database_id"] for d in (await walls.attacker.wdl(
        "d1", "list", "--ns", ATTACKER, "--json")).json()}
    probe = Probe(walls, _d1_file(walls, VICTIM, victim["vault-db"]),
                  tuple(_d1_file(walls, ATTACKER, mine[n]) for n in ("attack-db", "attack-db2")))
    for db in ("DB", "DB2"):
        answer = await probe.sql("CREATE TABLE mine (a TEXT); INSERT INTO mine VALUES "
                                 "('attacker-row')", "run", db=db)
        assert answer["ok"], answer
    assert probe.victim_file.is_file(), probe.victim_file
    return probe


def _spellings(path: Path) -> list[str]:
    """The same file named several ways (SQLite resolves each to it)."""
    text = str(path)
    return [text, f"{path.parent}//./{path.name}", f"{path.parent}/../{path.parent.name}/"
            f"{path.name}", os.path.relpath(path), f"file:{text}", f"file://{text}?mode=ro",
            f"file:{text}?mode=rw&cache=shared", f"FILE:{text}?vfs=unix-none"]


def _platform_sqlite_files(walls: Walls, own: Iterable[Path]) -> list[Path]:
    """Every SQLite file of the platform under its data dir (D1 and Durable Object files;
    under `wdl dev` also the embedded log, audit, KV, queue and workflow files)."""
    skip = {p.resolve() for p in own}
    found = []
    for path in sorted(walls.data_dir.rglob("*")):
        if not path.is_file() or path.name.endswith(("-wal", "-shm", "-journal")):
            continue
        if path.resolve() in skip:
            continue
        with path.open("rb") as f:
            if f.read(16) == b"SQLite format 3\x00":
                found.append(path)
    return found


async def test_pragma_database_list_names_no_path(walls: Walls, probe: Probe) -> None:
    spellings = [
        "PRAGMA database_list", "pragma DATABASE_LIST", 'PRAGMA "database_list"',
        "PRAGMA main.database_list", "/* x */ PRAGMA\tdatabase_list;",
        "SELECT * FROM pragma_database_list", "SELECT file FROM pragma_database_list()",
        "select group_concat(file) AS f from PRAGMA_DATABASE_LIST",
        "WITH d AS (SELECT * FROM pragma_database_list) SELECT file FROM d",
        "SELECT 1; PRAGMA database_list",
        "SELECT name FROM pragma_table_list WHERE schema = 'main' UNION ALL "
        "SELECT file FROM pragma_database_list",
    ]
    for sql in spellings:
        for how in HOWS:
            await probe.refused(sql, how)
    await probe.own_database_works()
    await walls.assert_victim_intact()


async def test_attach_reaches_no_other_database_file(walls: Walls, probe: Probe) -> None:
    # The victim's D1 file, named every way, by every API.
    for name in _spellings(probe.victim_file):
        quoted = name.replace("'", "''")
        for sql in (f"ATTACH DATABASE '{quoted}' AS v", f"attach '{quoted}' as \"v\"",
                    f"/**/ATTACH/**/('{quoted}')/**/AS/**/v",
                    f"ATTACH '{quoted}' || '' AS v; SELECT * FROM v.t"):
            for how in ("all", "run", "exec", "batch"):
                await probe.refused(sql, how)
        await probe.refused("ATTACH DATABASE ? AS v", params=[name])
        await probe.refused("ATTACH DATABASE ?1 AS ?1", "run", params=[name])
    # Nothing stayed attached on the pooled connection for a later request.
    for how in ("all", "first"):
        await probe.refused("SELECT * FROM v.t", how, needle="no such table: v.t")
    await probe.refused("DETACH DATABASE v")
    # Every other SQLite file of the platform.
    targets = _platform_sqlite_files(walls, probe.own_files)
    assert probe.victim_file in targets
    if walls.kind == "dev":  # the embedded log, audit, KV (and more) are files here
        assert len(targets) >= 4, targets
    for path in targets:
        for name in (str(path), f"file:{path}?mode=ro"):
            for how in ("all", "exec"):
                await probe.refused(f"ATTACH '{name}' AS p", how)
        await probe.refused("SELECT * FROM p.sqlite_master", needle="no such table")
    await probe.own_database_works()
    await walls.assert_victim_intact()


async def test_writing_the_victim_through_attach_is_refused(walls: Walls, probe: Probe) -> None:
    victim = str(probe.victim_file)
    before = probe.victim_file.stat().st_mtime_ns, probe.victim_file.stat().st_size
    sql = f"ATTACH '{victim}' AS v; INSERT INTO v.t VALUES ('pwned')"
    for how in ("run", "exec", "batch"):
        await probe.refused(sql, how)
    # One statement per request: the attachment of the first is not there for the next.
    await probe.refused(f"ATTACH '{victim}' AS v", "run")
    for sql in ("INSERT INTO v.t VALUES ('pwned')", "DELETE FROM v.t"):
        await probe.refused(sql, "run", needle="no such table: v.t")
    await probe.refused("DROP TABLE v.t", "run", needle="no such table: v.t")
    assert (probe.victim_file.stat().st_mtime_ns, probe.victim_file.stat().st_size) == before
    await probe.own_database_works()
    await walls.assert_victim_intact()


async def test_no_statement_creates_a_file(walls: Walls, probe: Probe, tmp_path: Path) -> None:
    token = uuid.uuid4().hex
    targets = [walls.data_dir / f"pwn-{token}.db", walls.data_dir / "d1" / f"pwn-{token}.db",
               probe.own_files[0].parent / f"pwn-{token}.sqlite", tmp_path / f"pwn-{token}.db"]
    for path in targets:
        text = str(path)
        for sql in (f"ATTACH '{text}' AS c; CREATE TABLE c.x (a)",
                    f"ATTACH 'file:{text}?mode=rwc' AS c",
                    f"ATTACH 'file://{text}?mode=rwc&cache=private' AS c",
                    f"VACUUM INTO '{text}'", f"vacuum main into 'file:{text}?mode=rwc'",
                    f"VACUUM INTO '{text}' || ''"):
            for how in ("run", "exec"):
                answer = await probe.sql(sql, how)
                assert not answer["ok"], (sql, answer)
        await probe.refused("CREATE TABLE c.x (a)", needle="unknown database c")
        assert not path.exists(), path
    created = [p for root in (walls.data_dir, tmp_path) for p in root.rglob(f"*{token}*")]
    assert created == []
    await probe.own_database_works()
    await walls.assert_victim_intact()


async def test_pragmas_outside_the_allow_list_are_refused(walls: Walls, probe: Probe) -> None:
    for sql in (
            "PRAGMA journal_mode", "PRAGMA journal_mode=DELETE", "PRAGMA journal_mode = OFF",
            "PRAGMA writable_schema=ON", "PRAGMA writable_schema = 1",
            "PRAGMA temp_store_directory", "PRAGMA temp_store_directory = '/tmp'",
            "PRAGMA data_store_directory = '/tmp'", "PRAGMA mmap_size = 268435456",
            "PRAGMA cache_size = -1000000", "PRAGMA synchronous = OFF",
            "PRAGMA locking_mode = EXCLUSIVE", "PRAGMA wal_checkpoint(TRUNCATE)",
            "PRAGMA integrity_check", "PRAGMA compile_options", "PRAGMA function_list",
            "PRAGMA module_list", "PRAGMA pragma_list", "PRAGMA user_version = 7",
            "PRAGMA schema_version = 1", "PRAGMA application_id = 1", "PRAGMA page_count",
            "PRAGMA max_page_count = 1", "PRAGMA auto_vacuum = FULL", "PRAGMA query_only = 1",
            "PRAGMA trusted_schema = 1", "PRAGMA busy_timeout = 0", "PRAGMA threads = 8",
            "PRAGMA soft_heap_limit = 1", "PRAGMA hard_heap_limit = 1", "PRAGMA shrink_memory",
            "PRAGMA foreign_keys = 2", "PRAGMA page_size = 512", "PRAGMA data_version = 1",
            "PRAGMA table_info(_wdl_fence)", "PRAGMA table_info('_WDL_FENCE')",
            "PRAGMA index_list(_wdl_fence)", "PRAGMA quick_check(_wdl_fence)",
            "PRAGMA foreign_key_check(_wdl_fence)",
            "SELECT * FROM pragma_table_info('_wdl_fence')",
            "SELECT * FROM pragma_compile_options", "SELECT * FROM pragma_journal_mode",
            "SELECT * FROM pragma_function_list", "PRAGMA main.journal_mode = DELETE",
            "PRAGMA temp.table_info(mine)"):
        for how in ("all", "exec"):
            await probe.refused(sql, how)
    await probe.own_database_works()
    await walls.assert_victim_intact()


async def test_the_allowed_pragmas_and_ordinary_sql_work(walls: Walls, probe: Probe) -> None:
    for sql in ("PRAGMA table_list", "PRAGMA table_xinfo(mine)", "PRAGMA index_list(mine)",
                "PRAGMA foreign_key_list(mine)", "PRAGMA foreign_key_check",
                "PRAGMA foreign_keys", "PRAGMA foreign_keys = ON", "PRAGMA quick_check",
                "PRAGMA quick_check(1)", "PRAGMA optimize", "PRAGMA defer_foreign_keys = on",
                "PRAGMA case_sensitive_like = 'no'", "PRAGMA data_version", "PRAGMA page_size",
                "SELECT * FROM json_each('[1, 2]')", "SELECT * FROM pragma_index_list('mine')"):
        answer = await probe.sql(sql)
        assert answer["ok"], (sql, answer)
    assert await probe.rows("PRAGMA quick_check") == [{"quick_check": "ok"}]
    assert {"name": "mine"} in [{"name": r["name"]} for r in
                                await probe.rows("PRAGMA table_list")]
    batch = await probe.sql("CREATE TABLE IF NOT EXISTS scratch (k PRIMARY KEY, v)", "batch")
    assert batch["ok"], batch
    assert (await probe.sql("CREATE INDEX IF NOT EXISTS scratch_v ON scratch (v)", "exec"))["ok"]
    assert await probe.rows("INSERT INTO scratch VALUES (?, ?) RETURNING v",
                            params=["k", "v"]) == [{"v": "v"}]
    assert await probe.rows("SELECT v, json_object('k', k) AS j FROM scratch") == [
        {"v": "v", "j": '{"k":"k"}'}]
    assert (await probe.sql("DROP TABLE scratch", "run"))["ok"]
    await probe.own_database_works()


async def test_functions_and_tables_outside_the_allow_list_are_refused(
        walls: Walls, probe: Probe) -> None:
    for fn in ("sqlite_version()", "sqlite_source_id()", "sqlite_compileoption_get(0)",
               "sqlite_compileoption_used('ENABLE_FTS3')", "fts3_tokenizer('simple')",
               "SQLITE_VERSION ()"):
        await probe.refused(f"SELECT {fn} AS x", needle="not authorized to use function")
    # Extensions are never loaded (SQLite's own refusal, as on Cloudflare).
    await probe.refused("SELECT load_extension('/lib/x86_64-linux-gnu/libc.so.6') AS x")
    # No virtual table but FTS5 and R*Tree; none describing the file or the connection.
    await probe.refused("CREATE VIRTUAL TABLE f4 USING fts4(a)")
    await probe.refused("SELECT * FROM dbstat", needle="no such table: dbstat")
    await probe.refused("SELECT sql FROM sqlite_stmt", needle="no such table: sqlite_stmt")
    assert (await probe.sql("CREATE VIRTUAL TABLE IF NOT EXISTS f5 USING fts5(a)", "run"))["ok"]
    assert (await probe.sql("DROP TABLE f5", "run"))["ok"]
    await probe.own_database_works()
    await walls.assert_victim_intact()


async def test_the_platforms_tables_and_temp_files_stay_out_of_reach(
        walls: Walls, probe: Probe) -> None:
    for sql in ("SELECT * FROM _wdl_fence", "UPDATE _wdl_fence SET generation = 0",
                "DROP TABLE _wdl_fence", "ALTER TABLE _wdl_fence RENAME TO fence",
                "ALTER TABLE mine RENAME TO _wdl_mine", "ALTER TABLE mine RENAME TO _cf_KV",
                'ALTER TABLE mine RENAME TO "_Wdl_x"',
                "CREATE TRIGGER spy AFTER UPDATE ON _wdl_fence BEGIN SELECT 1; END",
                "CREATE TABLE _wdl_fence2 (a)", "CREATE INDEX _cf_i ON mine (a)",
                # A temp table, view or trigger would be a file of its own.
                "CREATE TEMP TABLE scratch (a)", "CREATE TEMPORARY VIEW tv AS SELECT 1",
                "CREATE TEMP TRIGGER tt AFTER INSERT ON mine BEGIN SELECT 1; END"):
        for how in ("run", "exec"):
            # "not authorized" or "access to main._wdl_fence.id is prohibited"
            await probe.refused(sql, how, needle="SQLITE_AUTH")
    await probe.own_database_works()
    await walls.assert_victim_intact()


async def _victim_write_ms(walls: Walls) -> float:
    started = time.monotonic()
    r = await walls.get(walls.host(VICTIM), "/vault/write", timeout=120)
    assert r.status_code == 200, r.text
    return (time.monotonic() - started) * 1000


async def test_slow_sql_is_cut_off_and_stalls_no_one(walls: Walls, probe: Probe) -> None:
    # Slow statements on both of the attacker's databases, several at a time (more than
    # a default thread pool has threads), reads and a write that holds the write lock.
    attack = [probe.sql(SLOW, how, db=db) for db in ("DB", "DB2") for how in ("all", "exec")]
    attack += [probe.sql(f"INSERT INTO mine SELECT 'x' FROM ({SLOW})", "run", db=db)
               for db in ("DB", "DB2")]
    attack += [probe.sql(SLOW, "all", where="/do") for _ in range(2)]
    started = time.monotonic()
    flood = asyncio.gather(*attack)
    await asyncio.sleep(0.5)
    stalls = [await _victim_write_ms(walls) for _ in range(3)]
    answers = await flood
    elapsed = time.monotonic() - started
    # The victim never waited on the attacker's statements.
    assert max(stalls) < 3000, stalls
    for answer in answers:
        assert not answer["ok"] and TIMEOUT in answer["error"], answer
        assert answer["error"].startswith(("D1_ERROR: ", "D1_EXEC_ERROR: ")), answer
    # Each request was cut off at the time limit (2 s); one database runs one at a time.
    assert elapsed < 60, elapsed
    # The write was rolled back; the database is free again at once.
    await probe.own_database_works()
    for db in ("DB", "DB2"):
        assert await probe.rows("SELECT count(*) AS n FROM mine", db=db) == [{"n": 1}]
    await walls.assert_victim_intact()


async def test_wdl_d1_execute_and_migrations_are_confined(
        walls: Walls, probe: Probe, tmp_path: Path) -> None:
    victim = str(probe.victim_file)
    attacker = walls.attacker
    checks: list[tuple[tuple[str, ...], str]] = [
        (("d1", "execute", "attack-db", "--ns", ATTACKER, "--command",
          f"ATTACH '{victim}' AS v; SELECT * FROM v.t"), NOT_AUTHORIZED),
        (("d1", "execute", "attack-db", "--ns", ATTACKER, "--command",
          "PRAGMA database_list", "--json"), NOT_AUTHORIZED),
        (("d1", "execute", "attack-db", "--ns", ATTACKER, "--command",
          "SELECT file FROM pragma_database_list"), NOT_AUTHORIZED),
        (("d1", "execute", "attack-db", "--ns", ATTACKER, "--command", SLOW), TIMEOUT),
    ]
    script = tmp_path / "attack.sql"
    script.write_text(f"CREATE TABLE IF NOT EXISTS loot (a);\n"
                      f"ATTACH DATABASE '{victim}' AS v;\n"
                      f"INSERT INTO loot SELECT a FROM v.t;\n"
                      f"INSERT INTO v.t VALUES ('pwned');\n")
    checks.append((("d1", "execute", "attack-db", "--ns", ATTACKER, "--file", str(script)),
                   NOT_AUTHORIZED))
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_attach.sql").write_text(
        f"ATTACH '{victim}' AS v;\nINSERT INTO v.t VALUES ('pwned');\n")
    checks.append((("d1", "migrations", "apply", "attack-db", "--ns", ATTACKER, "--dir",
                    str(migrations)), NOT_AUTHORIZED))
    (migrations / "0001_attach.sql").write_text("PRAGMA writable_schema = ON;\n")
    checks.append((("d1", "migrations", "apply", "attack-db", "--ns", ATTACKER, "--dir",
                    str(migrations)), NOT_AUTHORIZED))
    for args, needle in checks:
        result = await attacker.wdl(*args, ok=False)
        assert result.code != 0, (args, result)
        said = " ".join(result.text.split())  # the CLI wraps long lines
        assert needle in said, (args, result.text)
        assert "victim-d1-row" not in result.text, result.text
        assert str(walls.data_dir) not in result.text, result.text
    # Nothing of it was applied or recorded.
    listed = (await attacker.wdl("d1", "migrations", "list", "attack-db", "--ns", ATTACKER,
                                 "--json")).json()
    assert listed == []
    tables = (await attacker.wdl("d1", "execute", "attack-db", "--ns", ATTACKER, "--command",
                                 "SELECT name FROM sqlite_master WHERE name = 'loot'",
                                 "--json")).json()
    assert tables[0]["results"] == []
    await probe.own_database_works()
    await walls.assert_victim_intact()


async def test_durable_objects_and_loader_children_are_confined(
        walls: Walls, probe: Probe) -> None:
    victim = str(probe.victim_file)
    for where in ("/do", "/child"):
        for how in ("all", "exec"):
            await probe.refused("PRAGMA database_list", how, where=where)
            await probe.refused(f"ATTACH '{victim}' AS v", how, where=where)
            await probe.refused("SELECT file FROM pragma_database_list", how, where=where)
    # A Durable Object's own SQL runs in workerd's SQLite, which refuses the same.
    for sql in (f"ATTACH '{victim}' AS v", f"ATTACH 'file:{victim}?mode=ro' AS v",
                "PRAGMA database_list", "SELECT * FROM pragma_database_list"):
        answer = await probe.sql(sql, where="/do-own")
        assert not answer["ok"] and NOT_AUTHORIZED in answer["error"], (sql, answer)
    copy = probe.own_files[0].parent / f"do-{uuid.uuid4().hex}.sqlite"
    answer = await probe.sql(f"VACUUM INTO '{copy}'", where="/do-own")
    assert not answer["ok"], answer
    assert not copy.exists()
    await probe.own_database_works()
    await walls.assert_victim_intact()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_platform_files_are_readable_by_no_one_else(walls: Walls, probe: Probe) -> None:
    # Durable Objects have written their files by now (the victim's and the probe's).
    assert (await probe.sql("SELECT 1", where="/do-own"))["ok"]
    assert _mode(walls.data_dir) == 0o700
    private_dirs = [walls.data_dir / "d1", walls.data_dir / "objects"]
    private_dirs += [p for p in (walls.data_dir / "d1").iterdir() if p.is_dir()]
    for path in private_dirs:
        assert path.is_dir() and _mode(path) == 0o700, (path, oct(_mode(path)))
    files = [p for p in (walls.data_dir / "d1").rglob("*") if p.is_file()]
    # The objects host's generated workerd config (*.capnp) is the internal-token wall's.
    files += [p for p in (walls.data_dir / "objects").rglob("*")
              if p.is_file() and p.suffix != ".capnp"]
    if walls.kind == "dev":
        # The embedded log, audit, KV, queue and workflow files, blobs, R2 objects...
        files += [p for p in walls.data_dir.rglob("*") if p.is_file() and p.suffix != ".capnp"]
        private_dirs += [p for p in walls.data_dir.rglob("*") if p.is_dir()]
        for path in private_dirs:
            assert _mode(path) == 0o700, (path, oct(_mode(path)))
    assert len([p for p in files if p.suffix == ".sqlite"]) >= 3, files
    loose = {str(p): oct(_mode(p)) for p in files if _mode(p) & 0o077}
    assert loose == {}, json.dumps(loose, indent=1)
    await walls.assert_victim_intact()
