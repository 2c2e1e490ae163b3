"""Moves the clock of every Python process of a test run, when asked.

`make test` runs the suite a second time with ``PYTHONPATH=tests/clock_ahead`` and
``TESTS_CLOCK_AHEAD_DAYS=365``: Python imports this module at start-up in pytest and in every
Python process the tests start (``digestbot`` commands, servers, sinks), and each one then
reads dates a year ahead (time-machine patches the wall clock; monotonic clocks keep
running, so timeouts and thread waits behave). A test that only passes on today's date fails
there. libfaketime was tried first: with Python 3.11 its monotonic handling makes timed
thread waits hang or ``time.sleep`` fail with EINVAL.
"""

from __future__ import annotations

import os

_days = os.environ.get("TESTS_CLOCK_AHEAD_DAYS")
if _days:
    from datetime import UTC, datetime, timedelta

    import time_machine

    time_machine.travel(datetime.now(UTC) + timedelta(days=int(_days)), tick=True).start()
