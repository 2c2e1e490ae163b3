"""How fast `digestbot db copy` moves a store: SQLite file -> PostgreSQL -> SQLite file.

A synthetic store of N readers, each with a sent 16 KB digest of 10 papers (so every
table has rows and digest_messages carries most of the bytes), plus 20 papers per reader.
PostgreSQL on 127.0.0.1 (DIGESTBOT_TEST_PG), in a schema of its own, dropped afterwards.

Usage: .venv/bin/python bench/db_copy.py [N]   (default: 5000)
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import create_engine, insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digestbot.store import Digest, DigestItem, Paper, Subscriber, open_store  # noqa: E402
from digestbot.store.copy import copy_store  # noqa: E402
from digestbot.store.models import DigestMessage  # noqa: E402

PG = os.environ.get("DIGESTBOT_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


def fill(store, n: int) -> int:  # type: ignore[no-untyped-def]
    papers = [
        {
            "id": f"2611.{i:05d}",
            "arxiv_id": f"2611.{i:05d}",
            "title_key": f"paper {i}",
            "title": f"Paper {i}",
            "abstract": "We study things. " * 60,
            "listed_on": date(2026, 11, 20),
            "links": [],
            "first_seen_at": NOW,
        }
        for i in range(20 * n)
    ]
    body = b"x" * 16_000
    with store.session() as session:
        for start in range(0, len(papers), 5000):
            session.execute(insert(Paper), papers[start : start + 5000])
        for start in range(0, n, 1000):
            ids = range(start + 1, min(n, start + 1000) + 1)
            session.execute(
                insert(Subscriber),
                [
                    {
                        "id": i, "email": f"r{i}@example.org", "email_key": f"r{i}@example.org",
                        "keywords": ["diffusion"], "feed_token": secrets.token_hex(16),
                        "pref_token": secrets.token_hex(16), "last_period": "2026-11-22/daily",
                    }
                    for i in ids
                ],
            )  # fmt: skip
            session.execute(
                insert(Digest),
                [
                    {"id": i, "subscriber_id": i, "period": "2026-11-22/daily", "state": "sent",
                     "message_id": f"<{i}@example.org>", "recipient": f"r{i}@example.org",
                     "subject": "10 new papers"}
                    for i in ids
                ],
            )  # fmt: skip
            session.execute(insert(DigestMessage), [{"digest_id": i, "message": body} for i in ids])
            items = [
                {"digest_id": i, "paper_id": f"2611.{(i * 10 + k) % (20 * n):05d}", "rank": k,
                 "score": 0.5}
                for i in ids
                for k in range(10)
            ]  # fmt: skip
            session.execute(insert(DigestItem), items)
    return n


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    print(f"cpu_count={os.cpu_count()}  (shared machine: figures are noisy)")
    schema = "bench_" + secrets.token_hex(4)
    admin = create_engine(PG)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    pg = f"{PG}?options=-csearch_path%3D{schema}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src = open_store(Path(tmp) / "src.db")
            fill(src, n)
            dst = open_store(pg)
            for label, a, b in (("SQLite -> PostgreSQL", src, dst),):
                started, cpu = time.perf_counter(), time.process_time()
                report = copy_store(a, b)
                took, cpu = time.perf_counter() - started, time.process_time() - cpu
                mb = Path(tmp, "src.db").stat().st_size / 1e6
                print(
                    f"{label}: {report.rows:,} rows ({mb:.0f} MB file) in {took:.1f} s "
                    f"(CPU {cpu:.1f} s): {report.rows / took:,.0f} rows/s"
                )
            back = open_store(Path(tmp) / "back.db")
            started = time.perf_counter()
            report = copy_store(dst, back)
            took = time.perf_counter() - started
            print(
                f"PostgreSQL -> SQLite: {report.rows:,} rows in {took:.1f} s: "
                f"{report.rows / took:,.0f} rows/s"
            )
            for store in (src, dst, back):
                store.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
