"""Cloudflare's cron syntax: five fields, Quartz-like extensions, and how WDL runs it.

Cloudflare parses cron triggers with its `saffron` library; this module follows that
grammar so a trigger deploys here exactly when it would deploy there:

    minute       0-59                     * , - /
    hour         0-23                     * , - /
    day of month 1-31                     * , - /  L  LW  L-n  L-nW  nW
    month        1-12 or JAN-DEC          * , - /
    day of week  1-7 (1 = Sunday) or SUN-SAT   * , - /  L  nL  n#k

Fields are separated by whitespace, with nothing before or after them. Names are
case-insensitive, `L` and `W` are not. A range may wrap (`50-10` in minutes), a step is
1 up to the field's span, `n#k` takes k in 1-5. Seconds and years (6 or 7 fields),
`?`, `@daily`-style macros and `0` for Sunday are refused, as Cloudflare refuses them.

The scheduler runs triggers with croniter, so `to_croniter` rewrites an accepted
expression into croniter's dialect (explicit value lists, Sunday = 0, `L5` for the last
Friday). `LW`, `L-n` and `L-nW` have no croniter form and are refused with a message
saying so (docs/compatibility.md). The expression a worker sees in `controller.cron` is
always the one it deployed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_MAX_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_SEPARATOR = re.compile(r"[ \t]+")


class CronError(ValueError):
    """Not a cron expression Cloudflare accepts (or one WDL cannot run); the message says
    which field and why."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()

    @property
    def span(self) -> int:
        return self.high - self.low


MINUTE = _Field("minute", 0, 59)
HOUR = _Field("hour", 0, 23)
DAY = _Field("day of month", 1, 31)
MONTH = _Field("month", 1, 12, MONTHS)
WEEKDAY = _Field("day of week", 1, 7, DAYS)


def _value(field: _Field, text: str) -> int:
    if text.isdigit() and text.isascii():
        number = int(text)
        if field.low <= number <= field.high:
            return number
        raise CronError(f"{field.name}: {text} is out of range {field.low}-{field.high}"
                        + (" (1 = Sunday)" if field is WEEKDAY else ""))
    if field.names and text.upper() in field.names:
        return field.names.index(text.upper()) + field.low
    raise CronError(f"{field.name}: {text!r} is not a value")


def _step(field: _Field, text: str) -> int:
    if not (text.isdigit() and text.isascii()) or not 1 <= int(text) <= field.span:
        raise CronError(f"{field.name}: step {text!r} must be 1-{field.span}")
    return int(text)


def _walk(field: _Field, start: int, end: int, step: int = 1) -> list[int]:
    """start..end by step; a range whose end is before its start wraps around."""
    count = field.high - field.low + 1
    out = []
    offset = 0
    length = (end - start) % count
    while offset <= length:
        out.append(field.low + (start - field.low + offset) % count)
        offset += step
    return out


def _part(field: _Field, text: str) -> list[int]:
    """One comma-separated item: `*` (only with a step), a value, `a-b`, `a/s`, `a-b/s`."""
    head, slash, step_text = text.partition("/")
    step = _step(field, step_text) if slash else 1
    if head == "*":
        if not slash:
            raise CronError(f"{field.name}: `*` cannot be combined with other values")
        return _walk(field, field.low, field.high, step)
    first, dash, last = head.partition("-")
    start = _value(field, first)
    if dash:
        return _walk(field, start, _value(field, last), step)
    return _walk(field, start, field.high, step) if slash else [start]


def _values(field: _Field, text: str) -> list[int] | None:
    """None for `*`, else the sorted values of a list of items."""
    if text == "*":
        return None
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"{field.name}: empty item in {text!r}")
        values.update(_part(field, item))
    return sorted(values)


def _join(values: list[int] | None, shift: int = 0) -> str:
    return "*" if values is None else ",".join(str(v + shift) for v in values)


def _day_of_month(text: str) -> tuple[str, list[int] | None]:
    """(croniter form, the days it names; None when any day may match)."""
    if text.startswith("L"):
        if text == "L":
            return "L", None
        if text == "LW" or re.fullmatch(r"L-\d+W?", text):
            if text != "LW":
                offset = int(text[2:].rstrip("W"))
                if not 1 <= offset <= 30:
                    raise CronError(f"day of month: offset in {text!r} must be 1-30")
            raise CronError(f"day of month: {text!r} is valid on Cloudflare but not supported "
                            "by WDL's scheduler yet (use L, or nW with a day)")
        raise CronError(f"day of month: {text!r} is not L, LW, L-n or L-nW")
    if text.endswith("W"):
        day = _value(DAY, text[:-1])
        return f"{day}W", [day]
    values = _values(DAY, text)
    return _join(values), values


def _day_of_week(text: str) -> str:
    """croniter's form of a Cloudflare day of week (croniter counts Sunday as 0)."""
    if text == "L":
        return "6"  # saffron reads a bare L as Saturday, the last day of the week
    if text.endswith("L") and len(text) > 1:
        return f"L{_value(WEEKDAY, text[:-1]) - 1}"
    day, hash_, nth = text.partition("#")
    if hash_:
        if not (nth.isdigit() and nth.isascii()) or not 1 <= int(nth) <= 5:
            raise CronError(f"day of week: {text!r}: the n of `#n` must be 1-5")
        return f"{_value(WEEKDAY, day) - 1}#{nth}"
    return _join(_values(WEEKDAY, text), -1)


@lru_cache(maxsize=4096)
def to_croniter(expr: str) -> str:
    """The croniter expression that runs `expr`, or CronError. Cached: deploys and the
    scheduler's ticks repeat the same few schedules."""
    if not isinstance(expr, str) or not expr or expr != expr.strip(" \t"):
        raise CronError("a cron expression is five fields separated by spaces")
    fields = _SEPARATOR.split(expr)
    if len(fields) != 5:
        raise CronError(f"{len(fields)} fields: Cloudflare cron triggers have exactly five "
                        "(minute hour day-of-month month day-of-week), no seconds or years")
    minute, hour, dom, month, dow = fields
    dom_form, days = _day_of_month(dom)
    months = _values(MONTH, month)
    weekday = _day_of_week(dow)
    if days is not None and weekday == "*" and min(days) > max(
            _MAX_DAYS[m - 1] for m in (months or range(1, 13))):
        raise CronError(f"day of month {dom} never occurs in month {month}: the trigger "
                        "would never run")
    return " ".join((_join(_values(MINUTE, minute)), _join(_values(HOUR, hour)), dom_form,
                     _join(months), weekday))


@lru_cache(maxsize=4096)
def canonical(expr: str) -> str:
    """The schedule `expr` runs, as text: equal for two spellings exactly when they fire
    at the same times ("* * * * *", "*/1 * * * *", "0-59 * * * *" are one schedule).

    Taken from croniter's own expansion of `to_croniter(expr)` (every field as its set of
    values, `*` for a full one, and the day-of-month / day-of-week rule croniter applies),
    so it is the schedule the scheduler actually runs. CronError as `to_croniter`."""
    from croniter import croniter  # the runner's own reading; imported late, it is heavy

    it = croniter(to_croniter(expr))
    nth = {str(k): sorted(map(str, v)) for k, v in sorted(it.nth_weekday_of_month.items())}
    fields = [",".join(map(str, values)) for values in it.expanded]
    return " ".join(fields) + (f" {nth}" if nth else "")


def first_duplicate(exprs: list[str] | tuple[str, ...]) -> tuple[str, str] | None:
    """The first pair of different spellings of one schedule in `exprs` (earlier, later),
    or None. Invalid expressions are left to the validator."""
    seen: dict[str, str] = {}
    for expr in exprs:
        try:
            key = canonical(expr)
        except (CronError, ValueError, KeyError):
            continue
        if key in seen:
            return seen[key], expr
        seen[key] = expr
    return None
