"""Pacing: at most ``rate`` messages per second across all connections of one sender.

Each message reserves the next free slot on a schedule spaced ``1/rate`` apart, so there are
no bursts: over any stretch of the run the achieved rate stays at or under the limit. A sender
that fell behind (a slow server) does not catch up in a burst either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class RateLimiter:
    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        # injectable so tests can check the schedule itself, which a loaded machine cannot skew
        self._clock = clock
        self._sleep = sleep

    async def acquire(self) -> None:
        if not self.interval:
            return
        now = self._clock()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await self._sleep(slot - now)
