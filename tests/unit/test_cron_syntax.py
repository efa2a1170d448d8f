"""Cloudflare's cron syntax (eventlog/cron.py): what deploys, what is refused, and when the
scheduler runs what deployed."""

from __future__ import annotations

import datetime as dt

import pytest

from eventlog import validation as v
from eventlog.cron import CronError, to_croniter
from eventlog.errors import InvalidEvent
from services.scheduler.scheduler import slots_between

pytestmark = pytest.mark.unit

# (Cloudflare expression, the croniter expression WDL runs)
ACCEPTED = [
    ("* * * * *", "* * * * *"),
    ("*/30 * * * *", "0,30 * * * *"),
    ("45 * * * *", "45 * * * *"),
    ("0 17 * * sun", "0 17 * * 0"),
    ("0 17 * * 1", "0 17 * * 0"),              # 1 is Sunday on Cloudflare
    ("10 7 * * mon-fri", "10 7 * * 1,2,3,4,5"),
    ("10 7 * * 2-6", "10 7 * * 1,2,3,4,5"),
    ("0 15 1 * *", "0 15 1 * *"),
    ("0 18 * * 6L", "0 18 * * L5"),            # the last Friday
    ("0 18 * * friL", "0 18 * * L5"),
    ("0 10 * * MON#2", "0 10 * * 1#2"),
    ("0 0 L * *", "0 0 L * *"),
    ("0 0 15W * *", "0 0 15W * *"),
    ("0 0 * JAN,aug *", "0 0 * 1,8 *"),
    ("50-10 * * * *", "0,1,2,3,4,5,6,7,8,9,10,50,51,52,53,54,55,56,57,58,59 * * * *"),
    ("*/20,7 * * * *", "0,7,20,40 * * * *"),
    ("0 0 * * 7-1", "0 0 * * 0,6"),            # Saturday to Sunday, wrapping
    ("0 0 * * L", "0 0 * * 6"),                # a bare L is Saturday
    ("0 0 29 2 *", "0 0 29 2 *"),
    ("0\t0 * * *", "0 0 * * *"),
]

REFUSED = [
    ("* * * * * *", "6 fields"),
    ("* * * * * * *", "7 fields"),
    ("*/1 * * * * *", "6 fields"),
    ("@daily", "1 fields"),
    ("0 0 * * 0", "out of range 1-7"),
    ("0 0 ? * *", "'?'"),
    ("60 * * * *", "out of range 0-59"),
    ("* 24 * * *", "out of range 0-23"),
    ("0 0 0 * *", "out of range 1-31"),
    ("0 0 * 13 *", "out of range 1-12"),
    ("*/0 * * * *", "step '0'"),
    ("*/60 * * * *", "step '60'"),
    ("* * */31 * *", "step '31'"),
    ("*,5 * * * *", "`*` cannot be combined"),
    ("1,,2 * * * *", "empty item"),
    ("0 0 * * MONDAY", "'MONDAY'"),
    ("0 0 * * 1#6", "1-5"),
    ("0 0 L,5 * *", "L, LW"),
    ("0 0 31 2 *", "never occurs"),
    ("0 0 31 4,6 *", "never occurs"),
    ("59 23 LW * *", "not supported by WDL"),
    ("0 0 L-3 * *", "not supported by WDL"),
    (" * * * * *", "five fields"),
    ("* * * * * ", "five fields"),
    ("* * * * *\n", "'*\\n'"),
    ("0 0 * * \uff11", "not a value"),         # a fullwidth digit
]


@pytest.mark.parametrize(("expr", "croniter_form"), ACCEPTED)
def test_cloudflare_forms_are_accepted_and_translated(expr: str, croniter_form: str) -> None:
    assert to_croniter(expr) == croniter_form
    assert v.cron("cron_triggers", expr) == expr


@pytest.mark.parametrize(("expr", "reason"), REFUSED)
def test_what_cloudflare_refuses_is_refused(expr: str, reason: str) -> None:
    with pytest.raises(CronError) as caught:
        to_croniter(expr)
    assert reason in str(caught.value)
    with pytest.raises(InvalidEvent, match="not a valid cron expression"):
        v.cron("cron_triggers", expr)


def _ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC).timestamp() * 1000)


def test_weekday_one_runs_on_sunday_as_on_cloudflare() -> None:
    # 2026-12-06 is a Sunday.
    slots = slots_between("0 17 * * 1", _ms(2026, 12, 1), _ms(2026, 12, 14))
    assert slots == [_ms(2026, 12, 6, 17), _ms(2026, 12, 13, 17)]


def test_the_last_friday_of_the_month() -> None:
    assert slots_between("0 18 * * 6L", _ms(2026, 12, 1), _ms(2027, 1, 31)) == [
        _ms(2026, 12, 25, 18), _ms(2027, 1, 29, 18)]


def test_a_seconds_field_never_reaches_the_scheduler() -> None:
    with pytest.raises(CronError):
        slots_between("* * * * * *", _ms(2026, 12, 1), _ms(2026, 12, 1, 0, 1))
