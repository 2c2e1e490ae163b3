"""A million subscribers in PostgreSQL: load them, select the due ones, score them against
1,000 papers, and watch memory stay flat (subscribers stream from the database in chunks).

    .venv/bin/python bench/scale.py [--subscribers N] [--papers M]

Uses the database ``test`` on 127.0.0.1:5432 (DIGESTBOT_TEST_PG to change), in a schema of
its own that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memory import PeakRss  # noqa: E402

from digestbot.config import default_config  # noqa: E402
from digestbot.pipeline.due import select_due  # noqa: E402
from digestbot.scoring import iter_subscriber_chunks, score_subscribers  # noqa: E402
from digestbot.store import Paper, open_store  # noqa: E402

PG = os.environ.get("DIGESTBOT_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ZONES = [
    "UTC",
    "Europe/Berlin",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Australia/Sydney",
    "America/Sao_Paulo",
    "Africa/Lagos",
]
NOW = datetime(2026, 11, 22, 18, 30, tzinfo=UTC)


def fake_words(rng: np.random.Generator, n: int) -> list[str]:
    """Pronounceable made-up words, so the real analyzer and stemmer see word-like text."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rng.choice(syllables, size=int(rng.integers(2, 5)))))
    return sorted(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--papers", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(3)
    vocab = np.array(fake_words(rng, 20_000))
    p = 1.0 / np.arange(1, len(vocab) + 1)
    p /= p.sum()

    schema = "bench_scale_" + secrets.token_hex(4)
    admin = create_engine(PG)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG else "?"
    store = open_store(f"{PG}{sep}options=-csearch_path%3D{schema}")
    print(
        f"bench/scale.py  cpu_count={os.cpu_count()}  PostgreSQL schema {schema} "
        "(shared machine: figures are noisy)"
    )
    try:
        # papers: first seen over the last day, so every reader has all of them as candidates
        with store.session() as s:
            for i in range(args.papers):
                title = " ".join(rng.choice(vocab, size=8, p=p))
                abstract = " ".join(rng.choice(vocab, size=150, p=p))
                s.add(
                    Paper(
                        id=f"p{i}",
                        title_key=f"k{i}",
                        title=title,
                        abstract=abstract,
                        first_seen_at=NOW - timedelta(hours=20, seconds=-i),
                    )
                )
        # subscribers: 3-5 two-word phrases from a shared pool of 50,000 with Zipf popularity
        pairs = rng.choice(vocab[200:], size=(50_000, 2))
        pool = [f"{a} {b}" for a, b in pairs.tolist()]
        pool_p = 1.0 / np.arange(1, len(pool) + 1)
        pool_p /= pool_p.sum()
        t0 = time.perf_counter()
        raw = store.engine.raw_connection()
        try:
            cur = raw.cursor()
            cols = (
                "email, email_key, name, keywords, frequency, weekday, send_hour, timezone, "
                "max_items, min_score, formats, status, feed_token, pref_token, "
                "created_at, updated_at"
            )
            batch = 100_000
            with cur.copy(f"COPY subscribers ({cols}) FROM STDIN") as copy:
                for lo in range(0, args.subscribers, batch):
                    n = min(batch, args.subscribers - lo)
                    phrases = rng.choice(len(pool), size=(n, 5), p=pool_p)
                    counts = rng.integers(3, 6, n)
                    hours = rng.integers(0, 24, n)
                    zones = rng.integers(0, len(ZONES), n)
                    weekly = rng.random(n) < 0.15
                    days = rng.integers(0, 7, n)
                    for j in range(n):
                        email = f"reader{lo + j}@example.org"
                        kw = json.dumps([pool[c] for c in phrases[j, : counts[j]]])
                        copy.write_row(
                            (
                                email,
                                email,
                                "",
                                kw,
                                "weekly" if weekly[j] else "daily",
                                int(days[j]),
                                int(hours[j]),
                                ZONES[zones[j]],
                                10,
                                0.0,
                                "email",
                                "active",
                                secrets.token_urlsafe(24),
                                secrets.token_urlsafe(24),
                                NOW - timedelta(days=30),
                                NOW - timedelta(days=30),
                            )
                        )
            raw.commit()
        finally:
            raw.close()
        load = time.perf_counter() - t0
        print(f"load   {args.subscribers:>9,} subscribers with COPY: {load:7.1f} s")

        config = default_config(scoring__new_subscriber_days=7)
        t0 = time.perf_counter()
        with PeakRss() as mem_due:
            selection = select_due(store, NOW)
        due_s = time.perf_counter() - t0
        due_ids = [d.subscriber_id for d in selection.due]
        print(
            f"due    {len(due_ids):>9,} of {args.subscribers:,} due at {NOW:%H:%M} UTC: "
            f"{due_s:7.1f} s, memory +{mem_due.grown_mib:,.0f} MiB "
            "(digestbot.pipeline.due.select_due)"
        )

        t0 = time.perf_counter()
        picks = scored = 0
        with PeakRss() as mem:
            rows = (
                row
                for chunk in iter_subscriber_chunks(
                    store, ids=due_ids, chunk_size=config["scoring.chunk_size"], light=True
                )
                for row in chunk
            )
            for item in score_subscribers(store, rows, now=NOW, config=config):
                scored += 1
                picks += len(item.picks)
        score_s = time.perf_counter() - t0
        print(
            f"score  {scored:>9,} due subscribers x {args.papers:,} papers: {score_s:7.1f} s "
            f"({scored / score_s:,.0f}/s), {picks:,} picks, peak memory "
            f"+{mem.grown_mib:,.0f} MiB over {mem.base / 2**20:,.0f} MiB "
            f"(chunks of {config['scoring.chunk_size']:,}, streamed from PostgreSQL)"
        )
    finally:
        store.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
