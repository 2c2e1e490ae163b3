"""How long selecting the due subscribers takes as their number grows (SQLite file).

Usage: .venv/bin/python bench/due.py [N ...]   (default: 10000 100000)
"""

from __future__ import annotations

import os
import random
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digestbot.pipeline import select_due  # noqa: E402
from digestbot.store import Subscriber, open_store  # noqa: E402

ZONES = [
    "UTC", "Europe/Berlin", "Europe/London", "America/New_York", "America/Los_Angeles",
    "America/Sao_Paulo", "Asia/Tokyo", "Asia/Kolkata", "Asia/Shanghai", "Australia/Sydney",
]  # fmt: skip


def fill(store, n: int) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    rows = []
    for i in range(n):
        rows.append(
            {
                "email": f"r{i}@example.org",
                "email_key": f"r{i}@example.org",
                "keywords": ["diffusion"],
                "frequency": "weekly" if i % 5 == 0 else "daily",
                "weekday": rng.randrange(7),
                "send_hour": rng.randrange(24),
                "timezone": rng.choice(ZONES),
                "status": "active",
                "formats": "email",
                "feed_token": secrets.token_hex(16),
                "pref_token": secrets.token_hex(16),
                "last_period": None,
            }
        )
    with store.session() as session:
        for start in range(0, n, 5000):
            session.execute(insert(Subscriber), rows[start : start + 5000])


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [10_000, 100_000]
    print(f"cpu_count={os.cpu_count()}  (shared machine: figures are noisy)")
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            store = open_store(Path(tmp) / "bench.db")
            fill(store, n)
            timings = []
            for _ in range(3):
                started = time.perf_counter()
                selection = select_due(store, now)
                timings.append(time.perf_counter() - started)
            store.dispose()
        best = min(timings)
        print(
            f"subscribers={n:>7}  due={len(selection):>7}  select_due best of 3: "
            f"{best * 1000:8.1f} ms  ({n / best:,.0f} subscribers/s)"
        )


if __name__ == "__main__":
    main()
