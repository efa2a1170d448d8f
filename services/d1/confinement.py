"""What tenant SQL may do in a D1 database: the authorizer, the limits, the time limit.

Modelled on workerd's own SQLite (`src/workerd/util/sqlite.c++`, `isAuthorized` and
`setupSecurity`), which Cloudflare's D1 and Miniflare's D1 run on, so a statement that
Miniflare refuses is refused here with the same message:

- one database file: ATTACH and DETACH are refused (so are `VACUUM INTO`, which attaches
  its target, and URI filenames, which only ATTACH could open), any schema other than
  `main` (and reads of `temp`) is refused, and `SQLITE_LIMIT_ATTACHED` is 0;
- PRAGMAs from an allow-list only (Cloudflare documents the same list for D1), checked
  with their argument; a table-valued pragma function (`pragma_database_list`) is the
  same pragma to the authorizer, so it is refused the same way;
- SQL functions from an allow-list (no `sqlite_version()`, no `fts3_tokenizer()`), and
  virtual tables of FTS5 and R*Tree only;
- the platform's names (`_wdl_`, `_cf_`) are never reachable;
- no transaction statements (every request is one fenced transaction, engine.py).

Where the authorizer cannot see an action, limits bound it: result and statement sizes,
expression depth, trigger depth, and a time limit per request (a progress handler), so
no statement holds its database's write lock or a D1 worker thread for long.
"""

from __future__ import annotations

import re
import sqlite3

# Names the platform keeps for itself in every tenant database (D1 reserves `_cf_`).
RESERVED_PREFIXES = ("_wdl_", "_cf_")
NOT_AUTHORIZED = "not authorized: SQLITE_AUTH"

# Cloudflare's D1 "Maximum SQL query duration" is 30 seconds; past it D1 resets the
# database's object and answers this (the request's transaction is rolled back here).
DEFAULT_TIMEOUT_MS = 30_000
# A database's size bound: Cloudflare's D1 allows 10 GB per database (WDL_D1_MAX_DATABASE_BYTES).
DEFAULT_MAX_BYTES = 10 * 1000**3
TIMEOUT_MESSAGE = "D1 DB storage operation exceeded timeout which caused object to be reset."
# The progress handler runs every this many SQLite VM steps: ~2 % of a tight loop's
# time, and a deadline overshoot of microseconds.
PROGRESS_STEPS = 10_000

# workerd's setupSecurity() values (what Miniflare enforces). SQL_LENGTH and
# VARIABLE_NUMBER are also D1's documented statement limits (100 000 bytes, 100 bound
# parameters); COLUMN is D1's 100 columns per table.
LIMITS: dict[int, int] = {
    sqlite3.SQLITE_LIMIT_LENGTH: 4 * 1024 * 1024,
    sqlite3.SQLITE_LIMIT_SQL_LENGTH: 100_000,
    sqlite3.SQLITE_LIMIT_COLUMN: 100,
    sqlite3.SQLITE_LIMIT_EXPR_DEPTH: 100,
    sqlite3.SQLITE_LIMIT_COMPOUND_SELECT: 5,
    sqlite3.SQLITE_LIMIT_VDBE_OP: 25_000,
    sqlite3.SQLITE_LIMIT_FUNCTION_ARG: 127,
    sqlite3.SQLITE_LIMIT_ATTACHED: 0,
    sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH: 50,
    sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER: 100,
    sqlite3.SQLITE_LIMIT_TRIGGER_DEPTH: 10,
    sqlite3.SQLITE_LIMIT_WORKER_THREADS: 0,
}
# The platform's own work on a tenant database (export, restore) copies what the tenant
# stored, possibly before these limits existed: it runs with SQLite's compiled maxima
# (setlimit clamps to them). Never ATTACHED: nothing ever needs a second file.
PLATFORM_LIMITS: dict[int, int] = {
    limit: (0 if limit == sqlite3.SQLITE_LIMIT_ATTACHED else 2**31 - 1) for limit in LIMITS}

# https://www.sqlite.org/lang_corefunc.html and friends, as workerd allows them.
# Left out on purpose (as in workerd): sqlite_version, sqlite_source_id,
# sqlite_compileoption_*, sqlite_offset (they describe the host's build), and whatever
# this SQLite has beyond the list (fts3_tokenizer, which takes a pointer; sqlite_log).
ALLOWED_FUNCTIONS = frozenset({
    # core
    "abs", "changes", "char", "coalesce", "concat", "concat_ws", "format", "glob", "hex",
    "ifnull", "iif", "instr", "last_insert_rowid", "length", "like", "likelihood", "likely",
    "load_extension", "lower", "ltrim", "max_scalar", "min_scalar", "nullif", "octet_length",
    "printf", "quote", "random", "randomblob", "replace", "round", "rtrim", "sign", "soundex",
    "substr", "substring", "total_changes", "trim", "typeof", "unhex", "unicode", "unlikely",
    "upper", "zeroblob",
    # date and time
    "date", "time", "datetime", "julianday", "unixepoch", "strftime", "timediff",
    "current_date", "current_time", "current_timestamp",
    # aggregates
    "avg", "count", "group_concat", "max", "min", "string_agg", "sum", "total",
    # window functions
    "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead",
    "first_value", "last_value", "nth_value",
    # math
    "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "ceil", "cos", "cosh",
    "degrees", "exp", "floor", "ln", "log", "log2", "mod", "pi", "pow", "radians", "sin",
    "sinh", "sqrt", "tan", "tanh", "trunc",
    # JSON
    "json", "jsonb", "json_array", "jsonb_array", "json_array_length", "json_extract",
    "jsonb_extract", "->", "->>", "json_insert", "jsonb_insert", "json_object",
    "jsonb_object", "json_patch", "jsonb_patch", "json_remove", "jsonb_remove",
    "json_replace", "jsonb_replace", "json_set", "jsonb_set", "json_type", "json_valid",
    "json_quote", "json_group_array", "jsonb_group_array", "json_group_object",
    "jsonb_group_object", "json_each", "json_tree",
    # FTS5, R*Tree
    "match", "highlight", "bm25", "snippet", "rtreecheck",
    # what ALTER TABLE runs internally
    "sqlite_rename_column", "sqlite_rename_table", "sqlite_rename_test",
    "sqlite_drop_column", "sqlite_rename_quotefix",
})

# Virtual table modules a tenant may create (D1: FTS5 and R*Tree).
ALLOWED_MODULES = frozenset({"fts5", "fts5vocab", "rtree", "rtree_i32"})

# Eponymous virtual tables that describe the file or the connection rather than the
# tenant's data (Cloudflare's build has none of them: "no such table").
HIDDEN_TABLES = frozenset({"dbstat", "sqlite_dbpage", "sqlite_stmt"})

# https://developers.cloudflare.com/d1/sql-api/sql-statements/ (and workerd's list):
# pragma -> the argument it may take.
_NO_ARG, _BOOLEAN, _NAME, _OPTIONAL_NAME, _NUMBER, _NUMBER_OR_NAME, _ANY = range(7)
ALLOWED_PRAGMAS: dict[str, int] = {
    "table_list": _ANY,
    "table_info": _NAME, "table_xinfo": _NAME,
    "index_info": _NAME, "index_list": _NAME, "index_xinfo": _NAME,
    "foreign_key_list": _NAME, "foreign_key_check": _OPTIONAL_NAME,
    "quick_check": _NUMBER_OR_NAME, "optimize": _NUMBER,
    "data_version": _NO_ARG, "page_size": _NO_ARG,
    "case_sensitive_like": _BOOLEAN, "foreign_keys": _BOOLEAN,
    "defer_foreign_keys": _BOOLEAN, "ignore_check_constraints": _BOOLEAN,
    "legacy_alter_table": _BOOLEAN, "recursive_triggers": _BOOLEAN,
    "reverse_unordered_selects": _BOOLEAN,
}
_BOOLEANS = frozenset({"true", "false", "yes", "no", "on", "off", "1", "0"})
_INTEGER = re.compile(r"[+-]?(\d{1,10}|0[xX][0-9a-fA-F]{1,8})")

_TRANSACTION_ACTIONS = frozenset({sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT})
_NAMED_ACTIONS = frozenset({  # arg1: the object created, dropped, written or reindexed
    sqlite3.SQLITE_CREATE_TABLE, sqlite3.SQLITE_DELETE, sqlite3.SQLITE_DROP_TABLE,
    sqlite3.SQLITE_INSERT, sqlite3.SQLITE_CREATE_VIEW, sqlite3.SQLITE_DROP_VIEW,
    sqlite3.SQLITE_REINDEX, sqlite3.SQLITE_UPDATE})
_PAIR_ACTIONS = frozenset({  # arg1 and arg2: an index or trigger and its table
    sqlite3.SQLITE_CREATE_INDEX, sqlite3.SQLITE_DROP_INDEX,
    sqlite3.SQLITE_CREATE_TRIGGER, sqlite3.SQLITE_DROP_TRIGGER})


def allowed_name(name: str | None) -> bool:
    return name is None or not name.lower().startswith(RESERVED_PREFIXES)


def is_transaction(action: int) -> bool:
    return action in _TRANSACTION_ACTIONS


def outside_the_file(action: int, arg1: str | None, db: str | None) -> bool:
    """Refused for every statement, the platform's own included: another file, or a
    schema other than this database's `main` and `temp`."""
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return True
    if action == sqlite3.SQLITE_ALTER_TABLE:
        db = arg1  # SQLite passes ALTER TABLE's schema as the first argument
    return db is not None and db not in ("main", "temp")


def _pragma(name: str, arg: str | None) -> bool:
    kind = ALLOWED_PRAGMAS.get(name.lower())
    if kind is None:
        return False
    if arg is not None and len(arg) >= 2 and arg[0] == arg[-1] and arg[0] in "'\"":
        arg = arg[1:-1]
    if kind == _ANY:
        return True
    if kind == _NO_ARG:
        return arg is None
    if kind == _BOOLEAN:
        return arg is None or arg.lower() in _BOOLEANS
    if kind == _NAME:
        return arg is not None and allowed_name(arg)
    if kind == _OPTIONAL_NAME:
        return allowed_name(arg)
    if kind == _NUMBER:
        return arg is None or _INTEGER.fullmatch(arg) is not None
    # _NUMBER_OR_NAME
    return arg is None or arg.isdigit() or allowed_name(arg)


def tenant_may(action: int, arg1: str | None, arg2: str | None, db: str | None) -> bool:
    """Whether tenant SQL may do `action` (SQLite's authorizer arguments)."""
    if outside_the_file(action, arg1, db):
        return False
    if db == "temp":
        # A temp table would be a file of its own: the temp schema is read-only.
        return action in (sqlite3.SQLITE_READ, sqlite3.SQLITE_UPDATE) and allowed_name(arg1)
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_RECURSIVE, sqlite3.SQLITE_ANALYZE):
        # ANALYZE (and `PRAGMA optimize`, which runs it) covers every table; its
        # statistics hold no rows of the platform's tables.
        return True
    if action == sqlite3.SQLITE_READ:
        return allowed_name(arg1) and (arg1 or "").lower() not in HIDDEN_TABLES
    if action in _NAMED_ACTIONS:
        return allowed_name(arg1)
    if action in _PAIR_ACTIONS:
        return allowed_name(arg1) and allowed_name(arg2)
    if action == sqlite3.SQLITE_ALTER_TABLE:
        return allowed_name(arg2)
    if action == sqlite3.SQLITE_PRAGMA:
        return arg1 is not None and _pragma(arg1, arg2)
    if action == sqlite3.SQLITE_FUNCTION:
        return arg2 is not None and arg2.lower() in ALLOWED_FUNCTIONS
    if action in (sqlite3.SQLITE_CREATE_VTABLE, sqlite3.SQLITE_DROP_VTABLE):
        return (arg2 or "").lower() in ALLOWED_MODULES and allowed_name(arg1)
    # Transactions, temp objects, ATTACH/DETACH, and anything SQLite adds later.
    return False


# SQLite does not ask the authorizer about a function in a column's DEFAULT expression
# (`CREATE TABLE x (a DEFAULT (sqlite_version()))` then an INSERT): the built-ins that
# are refused and exist in this build are replaced on the connection by one that fails.
# fts3_tokenizer() matters most: this build enables its two-argument form, which
# installs a tokenizer from a raw pointer (and the one-argument form reveals one).
DISARMED = (("fts3_tokenizer", 1), ("fts3_tokenizer", 2), ("sqlite_version", 0),
            ("sqlite_source_id", 0), ("sqlite_compileoption_get", 1),
            ("sqlite_compileoption_used", 1), ("sqlite_log", 2), ("fts5_source_id", 0))


def _disarmed(*args: object) -> None:
    raise sqlite3.OperationalError("not authorized")


def disarm(conn: sqlite3.Connection) -> None:
    for name, arity in DISARMED:
        conn.create_function(name, arity, _disarmed)


def apply_limits(conn: sqlite3.Connection, limits: dict[int, int]) -> None:
    for limit, value in limits.items():
        conn.setlimit(limit, value)


_DENIED_FUNCTION = re.compile(r"(?:not authorized to use function|no such function): (\S+)")


def function_offset(message: str, sql: str) -> str:
    """workerd names where a refused or unknown function is (`... at offset 7`);
    Python's sqlite3 has no sqlite3_error_offset, so the call is found in the text."""
    denied = _DENIED_FUNCTION.fullmatch(message)
    if denied is None:
        return message
    call = re.search(rf"(?<![\w$]){re.escape(denied.group(1))}\s*\(", sql, re.IGNORECASE)
    return message if call is None else f"{message} at offset {call.start()}"
