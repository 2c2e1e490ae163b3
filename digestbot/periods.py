"""Digest periods and when a subscriber is due: pure functions of a clock and a schedule.

A period is one day (``2026-11-22/daily``) or one ISO week (``2026-W47/weekly``) in the
subscriber's own time zone. Its *send point* is the local send hour on that day (daily) or on
the subscriber's weekday of that week (weekly). A subscriber is due when the send point of the
current period has passed and the last period they got a digest for is a different one. So a
run that was missed for days sends one digest for the current period, never one per missed
period, and a run repeated within a period sends nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from . import clock

FREQUENCIES = ("daily", "weekly")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def aware_utc(now: datetime | None = None) -> datetime:
    """``now`` as an aware UTC datetime; naive input is taken as UTC."""
    return clock.now() if now is None else clock.aware(now)


def period_key(frequency: str, local_day: date) -> str:
    """The period a local calendar day belongs to."""
    if frequency == "daily":
        return f"{local_day.isoformat()}/daily"
    if frequency == "weekly":
        year, week, _ = local_day.isocalendar()
        return f"{year}-W{week:02d}/weekly"
    raise ValueError(f"unknown frequency {frequency!r}; expected one of {FREQUENCIES}")


@dataclass(frozen=True, slots=True)
class Slot:
    """Where a schedule stands at one moment."""

    period: str
    send_at: datetime  # the send point of the current period, in UTC

    def due(self, now: datetime, last_period: str | None) -> bool:
        """The send point has passed and this period's digest was not sent yet."""
        return aware_utc(now) >= self.send_at and last_period != self.period


def current_slot(
    frequency: str, weekday: int, send_hour: int, timezone: str, now: datetime | None = None
) -> Slot:
    """The current period of a schedule and its send point.

    The send hour is wall-clock time: 08:00 in Europe/Berlin is 07:00 UTC in winter and
    06:00 UTC in summer. On the spring-forward day a send hour that does not exist (02:00)
    resolves to the instant the clocks jump, which is what a reader would expect.
    """
    if not 0 <= send_hour <= 23:
        raise ValueError(f"send_hour must be 0..23, got {send_hour}")
    if not 0 <= weekday <= 6:
        raise ValueError(f"weekday must be 0 (Monday)..6 (Sunday), got {weekday}")
    tz = zone(timezone)
    day = aware_utc(now).astimezone(tz).date()
    period = period_key(frequency, day)  # raises for an unknown frequency
    send_day = day if frequency == "daily" else day + timedelta(days=weekday - day.weekday())
    send_local = datetime.combine(send_day, time(send_hour), tzinfo=tz)
    # a wall-clock time skipped by a DST jump round-trips to the moment after the jump
    return Slot(period, send_local.astimezone(UTC))


def describe(frequency: str, weekday: int, send_hour: int, timezone: str) -> str:
    """A schedule for people: ``daily 08:00 Europe/Berlin``, ``weekly Fri 08:00 Asia/Tokyo``."""
    when = f"{send_hour:02d}:00 {timezone}"
    if frequency == "weekly":
        return f"weekly {WEEKDAYS[weekday][:3]} {when}"
    return f"daily {when}"


__all__ = [
    "FREQUENCIES",
    "WEEKDAYS",
    "Slot",
    "aware_utc",
    "current_slot",
    "describe",
    "period_key",
    "zone",
]
