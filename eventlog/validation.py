"""Rules for names and values carried by events, applied before anything is written.

Decoding never re-applies these rules: history written under looser rules
must stay readable, so a replay reaches the same verdicts it did before.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

from croniter import croniter

from eventlog.cron import CronError, first_duplicate, to_croniter
from eventlog.errors import InvalidEvent, ReservedName
from eventlog.hostnames import reserved_reason

NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
SECRET_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
BINDING_NAME_RE = SECRET_NAME_RE
VAR_NAME_RE = SECRET_NAME_RE
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
SHA256_HEX_RE = re.compile(r"[0-9a-f]{64}")
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
FLAG_RE = re.compile(r"[a-z0-9_]{1,128}")
HOST_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
PATH_RE = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")
LEASE_SCOPE_RE = re.compile(r"[a-z0-9][a-z0-9_.:/-]{0,199}")
KV_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
ENTRYPOINT_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]{0,127}")
# Prefixes of the platform's own names (`__WDL_BINDINGS` in env, `__wdl/shim.js` modules,
# `_wdl_`/`__wdl_` tables and methods) and Cloudflare's (`_cf_` tables): a tenant-chosen
# name that starts with one, in any case, could shadow or reach one of them.
RESERVED_PREFIXES = ("__wdl", "_wdl_", "_cf_")
MODULE_NAME_MAX = 512
REASON_MAX = 1024
ACTOR_MAX = 256
MAX_CRONS = 32


def name(field: str, value: object) -> str:
    """Namespace and worker names: lowercase DNS labels of 1-63 characters."""
    if not isinstance(value, str) or NAME_RE.fullmatch(value) is None:
        raise InvalidEvent(field, f"{value!r} is not a lowercase DNS label (a-z, 0-9, '-', 1-63)")
    return value


def kv_name(field: str, value: object) -> str:
    """A KV namespace id as wrangler's `kv_namespaces[].id` names it on WDL."""
    if not isinstance(value, str) or KV_NAME_RE.fullmatch(value) is None:
        raise InvalidEvent(field, f"{value!r} is not a KV namespace name "
                                  "([A-Za-z0-9_-], 1-64, starting with a letter or digit)")
    return value


# D1 databases and queues: Cloudflare's rule for both.
D1_NAME_RE = QUEUE_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
MAX_DELAY_S = 43_200  # 12 hours, Cloudflare's limit for delaySeconds and retry_delay


def _lower_name(field: str, value: object, what: str) -> str:
    if not isinstance(value, str) or D1_NAME_RE.fullmatch(value) is None:
        raise InvalidEvent(field, f"{value!r} is not a {what} (a-z, 0-9, '_', '-', 1-63, "
                                  "starting with a letter or digit)")
    return value


def d1_name(field: str, value: object) -> str:
    return _lower_name(field, value, "D1 database name")


def queue_name(field: str, value: object) -> str:
    return _lower_name(field, value, "queue name")


def bucket_name(field: str, value: object) -> str:
    """R2's bucket rule: 3-63 lowercase letters, digits and '-', not starting or ending in '-'."""
    if not isinstance(value, str) or BUCKET_RE.fullmatch(value) is None:
        raise InvalidEvent(field, f"{value!r} is not a bucket name (3-63 characters: a-z, "
                                  "0-9 and '-', starting and ending with a letter or digit)")
    return value


def entrypoint(field: str, value: object) -> str:
    """An export of the tenant's code (entrypoint, Durable Object or workflow class)."""
    if not isinstance(value, str) or ENTRYPOINT_RE.fullmatch(value) is None:
        raise InvalidEvent(field, f"{value!r} is not a JavaScript export name")
    return not_reserved(field, value, "export names")


def identifier(field: str, value: object) -> str:
    if not isinstance(value, str) or ID_RE.fullmatch(value) is None:
        raise InvalidEvent(field, f"{value!r} is not an id ([A-Za-z0-9_.:-], 1-128)")
    return value


def reserved_prefix(value: str) -> str | None:
    """The reserved prefix `value` starts with (case-insensitively), or None."""
    lowered = value.lower()
    return next((p for p in RESERVED_PREFIXES if lowered.startswith(p)), None)


# Names that are not plain keys of a JavaScript object: the gateway builds a worker's env
# by assignment (`env[name] = stub`, workerd/gateway/gateway.js tenantEnv), where
# `__proto__` would make the platform's raw binding stub env's prototype, reachable
# under every name env lacks instead of the API object wrapping it.
NOT_KEYS = frozenset({"__proto__"})


def not_reserved(field: str, value: str, what: str = "names") -> str:
    if value in NOT_KEYS:
        raise ReservedName(field, f"{value!r} is not a name a worker's env can hold")
    prefix = reserved_prefix(value)
    if prefix is not None:
        raise ReservedName(field, f"{value!r}: {what} starting with {prefix} (in any case) are "
                                  "reserved for the platform")
    return value


def secret_name(field: str, value: object) -> str:
    """Secret, var and binding names: identifiers outside the reserved prefixes."""
    if not isinstance(value, str) or SECRET_NAME_RE.fullmatch(value) is None:
        raise InvalidEvent(field, f"{value!r} is not an identifier ([A-Za-z_][A-Za-z0-9_]*)")
    return not_reserved(field, value)


def sha256_hex(field: str, value: object) -> str:
    if not isinstance(value, str) or SHA256_HEX_RE.fullmatch(value) is None:
        raise InvalidEvent(field, "must be a lowercase hex sha256 digest (64 characters)")
    return value


def sha256_bytes(field: str, value: object) -> bytes:
    if not isinstance(value, bytes) or len(value) != 32:
        raise InvalidEvent(field, "must be a 32-byte sha256 digest")
    return value


def non_negative(field: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidEvent(field, f"{value!r} must be an integer >= 0")
    return value


def positive(field: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidEvent(field, f"{value!r} must be an integer > 0")
    return value


def text(field: str, value: object, *, max_len: int, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidEvent(field, "must be a string")
    if not allow_empty and not value:
        raise InvalidEvent(field, "must not be empty")
    if len(value) > max_len:
        raise InvalidEvent(field, f"longer than {max_len} characters")
    return value


def non_empty_bytes(field: str, value: object, *, max_len: int | None = None) -> bytes:
    if not isinstance(value, bytes) or not value:
        raise InvalidEvent(field, "must be non-empty bytes")
    if max_len is not None and len(value) > max_len:
        raise InvalidEvent(field, f"longer than {max_len} bytes")
    return value


def compatibility_date(field: str, value: object) -> str:
    if not isinstance(value, str) or DATE_RE.fullmatch(value) is None:
        raise InvalidEvent(field, f"{value!r} is not a YYYY-MM-DD date")
    try:
        dt.date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidEvent(field, f"{value!r} is not a calendar date") from exc
    return value


def compatibility_flags(field: str, values: Iterable[object]) -> None:
    seen: set[str] = set()
    for flag in values:
        if not isinstance(flag, str) or FLAG_RE.fullmatch(flag) is None:
            raise InvalidEvent(field, f"{flag!r} is not a compatibility flag")
        if flag in seen:
            raise InvalidEvent(field, f"{flag!r} appears twice")
        seen.add(flag)


@lru_cache(maxsize=4096)
def _croniter_ok(expr: str) -> bool:
    return bool(croniter.is_valid(expr))


def cron(field: str, value: object) -> str:
    """Cloudflare's five-field cron syntax (eventlog/cron.py), runnable by the scheduler."""
    if not isinstance(value, str) or not value.strip() or len(value) > 256:
        raise InvalidEvent(field, f"{value!r} is not a cron expression")
    try:
        translated = to_croniter(value)
    except CronError as exc:
        raise InvalidEvent(field, f"{value!r} is not a valid cron expression: {exc}") from None
    if not _croniter_ok(translated):
        raise InvalidEvent(field, f"{value!r} is not a valid cron expression")
    return value


def crons(field: str, values: Iterable[object]) -> None:
    items = list(values)
    if len(items) > MAX_CRONS:
        raise InvalidEvent(field, f"more than {MAX_CRONS} cron triggers")
    if len(set(map(str, items))) != len(items):
        raise InvalidEvent(field, "cron triggers must be unique")
    for expr in items:
        cron(field, expr)


def distinct_schedules(field: str, values: Iterable[object]) -> None:
    """No two triggers of a worker are spellings of one schedule ("* * * * *" and
    "*/1 * * * *" both fire every minute): each would run the handler once a slot.

    Checked where a deploy is accepted (the API, the CLI before it) and not in the
    event's own validation, so versions deployed before the rule still replay."""
    pair = first_duplicate([str(x) for x in values])
    if pair is not None:
        raise InvalidEvent(field, f'"{pair[0]}" and "{pair[1]}" are the same schedule: '
                           "keep one of them")


def host_pattern(field: str, value: object, *, claimable: bool = True) -> str:
    """A lowercase host name with an optional path, e.g. `api.example.com/v1/`; with
    `claimable`, one whose host a tenant may hold: no IP literal, local or single-label
    name (eventlog/hostnames.py). Releases skip that, so a claim made before the rule
    can still be given up."""
    if not isinstance(value, str) or not value or len(value) > 512:
        raise InvalidEvent(field, f"{value!r} is not a host pattern")
    host, slash, path = value.partition("/")
    labels = host.split(".")
    if len(host) > 253 or any(HOST_LABEL_RE.fullmatch(label) is None for label in labels):
        raise InvalidEvent(field, f"{host!r} is not a lowercase host name")
    if slash and PATH_RE.fullmatch("/" + path) is None:
        raise InvalidEvent(field, f"{'/' + path!r} is not a URL path")
    reason = reserved_reason(host) if claimable else None
    if reason is not None:
        raise InvalidEvent(field, f"{host} is {reason}: it belongs to no tenant")
    return value


def host_name(field: str, value: object) -> str:
    """A host a tenant may hold (a host pattern without a path)."""
    if isinstance(value, str) and "/" in value:
        raise InvalidEvent(field, f"{value!r} is a host pattern with a path, not a host")
    return host_pattern(field, value)


def lease_scope(field: str, value: object) -> str:
    if not isinstance(value, str) or LEASE_SCOPE_RE.fullmatch(value) is None:
        raise InvalidEvent(field, f"{value!r} is not a lease scope ([a-z0-9_.:/-], 1-200)")
    return value


def string_map(
    field: str, values: Mapping[str, str], key_re: re.Pattern[str], *, max_value: int
) -> None:
    for key, value in values.items():
        if not isinstance(key, str) or key_re.fullmatch(key) is None:
            raise InvalidEvent(field, f"{key!r} is not a valid key")
        not_reserved(f"{field}.{key}", key)
        if not isinstance(value, str) or len(value) > max_value:
            raise InvalidEvent(f"{field}.{key}", f"must be a string of at most {max_value} chars")
