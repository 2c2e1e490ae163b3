"""The one clock every "now" in digestbot is read from.

It is the system clock unless something moved it: the CLI's ``--now``, a library caller
replaying a moment, or a test. ``set_now(moment)`` makes it read ``moment`` at once and go on
ticking from there, so timeouts and leases measured against it still pass; ``frozen=True``
stops it at ``moment``. Durations that are not dates (timeouts, rate limits, progress) use
``time.monotonic`` directly and are not affected.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

_lock = threading.Lock()
_offset = timedelta(0)
_frozen: datetime | None = None


def _system() -> datetime:
    return datetime.now(UTC)


def now() -> datetime:
    """The current moment as an aware UTC datetime."""
    frozen = _frozen
    if frozen is not None:
        return frozen
    return _system() + _offset


def timestamp() -> float:
    """The current moment as seconds since the epoch (what ``time.time()`` would say)."""
    return now().timestamp()


def aware(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def set_now(moment: datetime | None, *, frozen: bool = False) -> None:
    """Move the clock to ``moment`` (``None`` puts it back on the system clock)."""
    global _offset, _frozen
    with _lock:
        if moment is None:
            _offset, _frozen = timedelta(0), None
        elif frozen:
            _offset, _frozen = timedelta(0), aware(moment)
        else:
            _offset, _frozen = aware(moment) - _system(), None


@contextmanager
def moved_to(moment: datetime, *, frozen: bool = True) -> Iterator[None]:
    """The clock at ``moment`` inside the block, back where it was afterwards."""
    global _offset, _frozen
    with _lock:
        saved = (_offset, _frozen)
    set_now(moment, frozen=frozen)
    try:
        yield
    finally:
        with _lock:
            _offset, _frozen = saved
