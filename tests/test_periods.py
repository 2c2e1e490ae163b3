"""Periods and the due rule: pure functions of a clock, checked at the edges."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digestbot.periods import (
    current_slot,
    describe,
    period_key,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_period_keys() -> None:
    from datetime import date

    assert period_key("daily", date(2026, 11, 22)) == "2026-11-22/daily"
    assert period_key("weekly", date(2026, 11, 22)) == "2026-W47/weekly"
    # ISO weeks: 2027-01-01 is a Friday in week 53 of 2026
    assert period_key("weekly", date(2027, 1, 1)) == "2026-W53/weekly"
    with pytest.raises(ValueError, match="unknown frequency 'monthly'"):
        period_key("monthly", date(2026, 1, 1))


def test_daily_period_is_the_local_day_not_the_utc_day() -> None:
    # 23:30 UTC on the 21st is already the 22nd in Tokyo (UTC+9)
    slot = current_slot("daily", 0, 8, "Asia/Tokyo", utc(2026, 11, 21, 23, 30))
    assert slot.period == "2026-11-22/daily"
    assert slot.send_at == utc(2026, 11, 21, 23, 0)  # 08:00 JST
    assert slot.due(utc(2026, 11, 21, 23, 30), None)


def test_send_hour_is_wall_clock_across_dst() -> None:
    # Europe/Berlin: CET (UTC+1) until 2026-03-29 01:00 UTC, then CEST (UTC+2)
    before = current_slot("daily", 0, 8, "Europe/Berlin", utc(2026, 3, 28, 12))
    after = current_slot("daily", 0, 8, "Europe/Berlin", utc(2026, 3, 29, 12))
    assert before.send_at == utc(2026, 3, 28, 7)
    assert after.send_at == utc(2026, 3, 29, 6)
    autumn = current_slot("daily", 0, 8, "Europe/Berlin", utc(2026, 10, 25, 12))
    assert autumn.send_at == utc(2026, 10, 25, 7)


def test_send_hour_skipped_by_spring_forward_is_the_jump() -> None:
    # 02:00 does not exist in Berlin on 2026-03-29: the clocks go from 02:00 CET to 03:00
    slot = current_slot("daily", 0, 2, "Europe/Berlin", utc(2026, 3, 29, 12))
    assert slot.send_at == utc(2026, 3, 29, 1)


def test_weekly_send_point_is_the_weekday_of_the_current_iso_week() -> None:
    # 2026-11-22 is a Sunday (ISO week 47); Friday 08:00 JST of that week is 2026-11-19 23:00 UTC
    slot = current_slot("weekly", 4, 8, "Asia/Tokyo", utc(2026, 11, 22, 0))
    assert slot.period == "2026-W47/weekly"
    assert slot.send_at == utc(2026, 11, 19, 23)
    # on the Monday of the week the send point lies ahead
    monday = current_slot("weekly", 4, 8, "Asia/Tokyo", utc(2026, 11, 23, 0))
    assert monday.period == "2026-W48/weekly"
    assert not monday.due(utc(2026, 11, 23, 0), None)


@pytest.mark.parametrize(
    ("now", "last", "expected"),
    [
        (utc(2026, 11, 22, 6, 59), None, None),  # before 07:00 UTC = 08:00 CET
        (utc(2026, 11, 22, 7, 0), None, "2026-11-22/daily"),
        (utc(2026, 11, 22, 7, 0), "2026-11-21/daily", "2026-11-22/daily"),
        (utc(2026, 11, 22, 7, 0), "2026-11-22/daily", None),  # already sent today
        (utc(2026, 11, 22, 22, 59), "2026-11-22/daily", None),
        (utc(2026, 11, 22, 23, 0), "2026-11-22/daily", None),  # 00:00 local, new day, 08:00 ahead
        # down since the 18th: one digest for today, not one per missed day
        (utc(2026, 11, 22, 9, 0), "2026-11-18/daily", "2026-11-22/daily"),
    ],
)
def test_due_rule_daily(now: datetime, last: str | None, expected: str | None) -> None:
    slot = current_slot("daily", 0, 8, "Europe/Berlin", now)
    assert (slot.period if slot.due(now, last) else None) == expected


def test_due_rule_rejects_bad_schedules() -> None:
    with pytest.raises(ValueError, match="send_hour must be 0..23"):
        current_slot("daily", 0, 24, "UTC", utc(2026, 1, 1))
    with pytest.raises(ValueError, match="weekday must be"):
        current_slot("weekly", 7, 8, "UTC", utc(2026, 1, 1))


def test_naive_now_is_utc() -> None:
    naive = datetime(2026, 11, 22, 7, 0)
    slot = current_slot("daily", 0, 8, "Europe/Berlin", naive)
    assert slot.period == "2026-11-22/daily" and slot.due(naive, None)


def test_describe() -> None:
    assert describe("daily", 0, 8, "Europe/Berlin") == "daily 08:00 Europe/Berlin"
    assert describe("weekly", 4, 7, "Asia/Tokyo") == "weekly Fri 07:00 Asia/Tokyo"
