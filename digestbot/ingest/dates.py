"""Month-and-day dates without a year, and the rules that give them one."""

from __future__ import annotations

import re
from datetime import date

MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}
_MONTH = r"(?P<month>[A-Za-z]{3,9})\.?"
# "Mar 12, 2024", "Aug 28", "Jun 11 2" (the trailing number is the comment count)
DATE_LINE = re.compile(
    _MONTH + r"\s+(?P<day>\d{1,2})(?:,\s*(?P<year>\d{4}))?(?:\s+(?P<count>\d[\d,]*))?"
)
LISTING_LINE = re.compile(_MONTH + r"\s+(?P<day>\d{1,2})(?:,\s*(?P<year>\d{4}))?")


def month_number(name: str) -> int | None:
    return MONTHS.get(name.lower())


def latest_on_or_before(month: int, day: int, limit: date) -> date:
    """The latest month/day not after ``limit``: a yearless date takes limit's year, or the
    year before when that would land after it (Feb 29 goes back to the last leap year)."""
    for year in range(limit.year, limit.year - 9, -1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if candidate <= limit:
            return candidate
    raise ValueError(f"no valid date for month {month}, day {day}")


def valid_month_day(month: int, day: int) -> bool:
    try:
        date(2000, month, day)  # a leap year, so Feb 29 counts
    except ValueError:
        return False
    return True
