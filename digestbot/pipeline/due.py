"""Which subscribers are due a digest now.

SQL streams the active subscribers' schedule columns (no ORM objects); the current period
and send point are computed once per distinct schedule (frequency, weekday, send hour, time
zone), of which there are few however many subscribers there are, and each row is then a
dictionary lookup and two comparisons.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple
from zoneinfo import ZoneInfoNotFoundError

from sqlalchemy import func, select

from ..periods import Slot, aware_utc, current_slot
from ..store import Store, Subscriber

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Due:
    subscriber_id: int
    period: str


class Schedule(NamedTuple):
    frequency: str
    weekday: int
    send_hour: int
    timezone: str


@dataclass
class Selection:
    due: list[Due]
    bad_schedules: list[tuple[Schedule, str]]

    def __len__(self) -> int:
        return len(self.due)


def select_due(
    store: Store, now: datetime | None = None, *, ids: Iterable[int] | None = None
) -> Selection:
    """Active subscribers whose digest is due at ``now``, in id order.

    A reader who has never had a digest and became active after this period's send point
    waits for the next one: their first digest comes at their next send hour, not on the
    next run. (A replay with ``now`` before they became active treats them as there.)

    ``ids`` narrows the selection (e.g. one subscriber for a preview); the due rule still
    applies. Schedules that cannot be evaluated (a time zone the system no longer knows)
    are reported, not raised, so the rest of the subscribers still get their digests.
    """
    now = aware_utc(now)
    # the time-zone arithmetic runs once per distinct schedule, however many subscribers
    slots: dict[Schedule, Slot | None] = {}
    bad: list[tuple[Schedule, str]] = []
    due: list[Due] = []
    query = (
        select(
            Subscriber.id,
            Subscriber.frequency,
            Subscriber.weekday,
            Subscriber.send_hour,
            Subscriber.timezone,
            Subscriber.last_period,
            func.coalesce(Subscriber.confirmed_at, Subscriber.created_at),
        )
        .where(Subscriber.status == "active")
        .order_by(Subscriber.id)
        .execution_options(yield_per=5000)
    )
    if ids is not None:
        query = query.where(Subscriber.id.in_(list(ids)))
    with store.session() as session:
        for row in session.execute(query):
            sid, frequency, weekday, send_hour, timezone, last_period, joined = row
            schedule = Schedule(frequency, weekday, send_hour, timezone)
            if schedule not in slots:
                try:
                    slots[schedule] = current_slot(*schedule, now)
                except (ValueError, ZoneInfoNotFoundError) as exc:
                    log.warning("skipping subscribers with schedule %s: %s", schedule, exc)
                    bad.append((schedule, str(exc)))
                    slots[schedule] = None
            slot = slots[schedule]
            if slot is None or not slot.due(now, last_period):
                continue
            if last_period is None and joined is not None and slot.send_at < joined <= now:
                continue  # joined after this period's send hour: theirs is the next one
            due.append(Due(sid, slot.period))
    return Selection(due, bad)
