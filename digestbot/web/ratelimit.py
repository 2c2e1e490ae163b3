"""A sliding-window limit on subscribe requests, per address and per client.

It lives in the process: `digestbot serve` runs one, and a restart forgetting the counts
only lets a few more requests through. Memory stays bounded by dropping idle keys; when
the table is full of live keys it refuses new keys (fails closed) rather than forgetting
live ones, so a flood of distinct keys cannot reset a victim's count.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self,
        limit: int,
        window: float = 3600.0,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._full_until = float("-inf")

    def hit(self, key: str) -> float:
        """Count one request; 0 if allowed, else the seconds until the next one is."""
        now = self.clock()
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                if len(self._hits) >= self.max_keys:
                    wait = self._make_room(now)
                    if wait:
                        return wait
                hits = self._hits[key] = deque()
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(1.0, hits[0] + self.window - now)
            hits.append(now)
            return 0.0

    def _make_room(self, now: float) -> float:
        """Drop idle keys; 0 if there is room now, else the seconds until some key goes idle.

        Scans at most once until that moment, so a flood of refused keys stays cheap.
        """
        if now < self._full_until:
            return max(1.0, self._full_until - now)
        stale = [k for k, h in self._hits.items() if not h or h[-1] <= now - self.window]
        for key in stale:
            del self._hits[key]
        if len(self._hits) < self.max_keys:
            return 0.0
        self._full_until = min(h[-1] for h in self._hits.values()) + self.window
        return max(1.0, self._full_until - now)


def client_key(address: str) -> str:
    """The rate-limit key of a client address: IPv6 clients by their /64.

    One IPv6 subscriber line usually gets a whole /64 (or more), so per-address counting
    would give a single client 2**64 quotas.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def mailbox_key(address: str) -> str:
    """The mailbox an address delivers to, for rate limits: lower-case, no ``+tag``.

    ``v+1@x`` and ``v+2@x`` land in the same inbox, so they share one quota.
    """
    local, _, domain = address.strip().lower().rpartition("@")
    if not local:
        return address.strip().lower()
    return (local.split("+", 1)[0] or local) + "@" + domain
