"""The whole `digestbot run` as a user runs it: the real CLI in a process of its own, on a
SQLite store (or PostgreSQL: --db URL) of N readers, with today's listing in the inbox,
sending over SMTP to a sink in another process on 127.0.0.1.

Readers are realistic: 2 to 4 interests each from a pool of 200 (single words and two-word
phrases), 10% also with 1 to 3 liked papers, 5% feed only; today's listing holds 1,000 new
papers whose words come from the same vocabulary, beside 2,000 older papers. Prints the core
count, each stage's time (from `digestbot run --json`), digests/s over the whole run, the
run's peak RSS (its own, from wait4, and summed with its digest workers'), and how much
the store grew, per reader.

    .venv/bin/python bench/run.py [--readers 10000] [--db URL] [--set KEY=VALUE] [--keep]

Compare 10,000 with 100,000 readers for the cost per digest and the peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import string
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from memory import PeakRss  # noqa: E402

from digestbot.store import Feedback, Paper, Subscriber, open_store  # noqa: E402
from tests.process_sink import SinkProcess  # noqa: E402

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
HEADER = (
    "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
    "byAK and the research community\n\nNov 22\n\n"
)
TODAY_PAPERS = 1000
OLD_PAPERS = 2000
INTERESTS = 200
CHUNK = 5000


def vocabulary(rng: random.Random, n: int = 600) -> list[str]:
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choices(string.ascii_lowercase, k=rng.randint(5, 9))))
    return sorted(words)


def text(rng: random.Random, words: list[str], n: int) -> str:
    return " ".join(rng.choices(words, k=n))


def write_listing(path: Path, rng: random.Random, words: list[str]) -> None:
    """Today's page, in the seed format: title, abstract, metadata block."""
    with path.open("w", encoding="utf-8") as fh:
        fh.write(HEADER)
        for i in range(TODAY_PAPERS):
            title = text(rng, words, rng.randint(6, 12)).capitalize() + f" {i}"
            abstract = ". ".join(text(rng, words, rng.randint(12, 25)) for _ in range(8))
            fh.write(f"{title}\n\n{abstract.capitalize()}.\n\n")
            fh.write(f"  • {rng.randint(1, 12)} authors\n·\nNov 21\n\n")


def fill_store(db: str, readers: int, rng: random.Random, words: list[str]) -> None:
    store = open_store(db)
    pool = words[: INTERESTS // 2] + [
        f"{a} {b}" for a, b in zip(words[100:200], words[200:300], strict=True)
    ]
    old = NOW - timedelta(days=30)
    try:
        with store.session() as s:
            s.add_all(
                Paper(
                    id=f"2610.{i:05d}",
                    arxiv_id=f"2610.{i:05d}",
                    title_key=f"old {i}",
                    title=text(rng, words, 8).capitalize(),
                    abstract=text(rng, words, 120) + ".",
                    first_seen_at=old,
                    updated_at=old,
                )
                for i in range(OLD_PAPERS)
            )
        liked_pool = [f"2610.{i:05d}" for i in range(1000)]
        for start in range(0, readers, CHUNK):
            rows, likes = [], []
            for n in range(start, min(start + CHUNK, readers)):
                roll = rng.random()
                rows.append(
                    {
                        "email": f"reader{n}@example.org",
                        "email_key": f"reader{n}@example.org",
                        "name": f"Reader {n}",
                        "keywords": rng.sample(pool, rng.randint(2, 4)),
                        "send_hour": 0,
                        "formats": "rss" if roll < 0.05 else "email",
                        "feed_token": secrets.token_urlsafe(16),
                        "pref_token": secrets.token_urlsafe(16),
                        "created_at": old,
                        "updated_at": old,
                    }
                )
                if rng.random() < 0.10:
                    likes.append((n, rng.sample(liked_pool, rng.randint(1, 3))))
            with store.session() as s:
                s.execute(Subscriber.__table__.insert(), rows)
                ids = dict(
                    s.query(Subscriber.email_key, Subscriber.id).filter(
                        Subscriber.email_key.in_([r["email_key"] for r in rows])
                    )
                )
                s.execute(
                    Feedback.__table__.insert(),
                    [
                        {
                            "subscriber_id": ids[f"reader{n}@example.org"],
                            "paper_id": p,
                            "value": 1,
                            "created_at": old,
                        }
                        for n, liked in likes
                        for p in liked
                    ],
                )
    finally:
        store.dispose()


def pg_size(url: str) -> tuple[int, int]:
    """PostgreSQL: the tables and indexes of the store's schema, on disk and in use alike
    (after VACUUM they are the same; without it, dead rows count)."""
    from sqlalchemy import text

    store = open_store(url, migrate=False)
    try:
        with store.engine.connect() as conn:
            size = conn.execute(
                text(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
                )
            ).scalar_one()
    finally:
        store.dispose()
    return int(size), int(size)


def store_size(db: Path) -> tuple[int, int]:
    """(bytes on disk, database file and WAL; bytes in use: pages not on the free list).
    SQLite reuses freed pages (messages deleted once sent) rather than shrinking the file."""
    import sqlite3

    on_disk = sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file())
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    return on_disk, (pages - free) * size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readers", type=int, default=10_000)
    parser.add_argument("--keep", action="store_true", help="keep the folder and print it")
    parser.add_argument(
        "--db",
        metavar="URL",
        help="an empty PostgreSQL store (a schema of its own) instead of a SQLite file",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a setting for the run, e.g. scoring.chunk_size=5000",
    )
    args = parser.parse_args()
    rng = random.Random(18)
    tmp = Path(tempfile.mkdtemp(prefix="bench-run-"))
    db = tmp / "bench.db"
    url = args.db or str(db)
    size = (lambda: pg_size(url)) if args.db else (lambda: store_size(db))
    words = vocabulary(rng)
    (tmp / "inbox").mkdir()
    write_listing(tmp / "inbox" / "today.txt", rng, words)
    fill_store(url, args.readers, rng, words)
    sink = SinkProcess(tmp / "sink.log").start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTBOT_")}
    env.update(
        DIGESTBOT_DB=url,
        DIGESTBOT_SECRET_KEY="bench-secret-key-0123456789",
        DIGESTBOT_INGEST_INBOX=str(tmp / "inbox"),
        DIGESTBOT_DIGEST_FEEDS_DIR=str(tmp / "feeds"),
        DIGESTBOT_DELIVERY_TRANSPORT="smtp",
        DIGESTBOT_SMTP_HOST=sink.host,
        DIGESTBOT_SMTP_PORT=str(sink.port),
        DIGESTBOT_SMTP_ALLOW_TEST_SETTINGS="true",  # a sink on 127.0.0.1
    )
    for setting in args.set:
        name, value = setting.split("=", 1)
        env["DIGESTBOT_" + name.replace(".", "_").upper()] = value
    before = size()
    digestbot = str(Path(sys.executable).with_name("digestbot"))
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [digestbot, "run", "--json", "--now", NOW.isoformat()],
            env=env,
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        with PeakRss(proc.pid, children=True, every=0.1) as sampler:
            out = proc.stdout.read()
            err = proc.stderr.read()
            _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        if proc.returncode not in (0, 3):
            sys.exit(f"digestbot run exited {proc.returncode}:\n{err.decode()[-3000:]}")
        report = json.loads(out)
        for line in err.decode().splitlines():
            if "peak RSS so far" in line:  # with --set log.level=debug
                print(line)
        time.sleep(0.5)  # the sink logs what it received as it goes
        received = sink.count()
    finally:
        sink.stop()
    on_disk, used = size()
    grown, grown_disk = used - before[1], on_disk - before[0]
    digests = report["digests"]
    made = digests["queued"] + digests["feed_only"]
    print(f"cpu_count: {os.cpu_count()}; load average: {os.getloadavg()[0]:.1f}")
    print(
        f"{args.readers:,} readers (2-4 of {INTERESTS} interests, 10% with liked papers), "
        f"{TODAY_PAPERS:,} new papers; {'PostgreSQL' if args.db else 'SQLite'}; SMTP to a "
        "sink in another process" + (f"; {', '.join(args.set)}" if args.set else "")
    )
    print(
        f"digests: {digests['queued']:,} queued, {digests['feed_only']:,} feed only, "
        f"{digests['empty']:,} empty, {digests['failed']:,} failed; sent "
        f"{report['send']['sent']:,} (sink got {received:,}), feeds {report['feeds']:,}"
    )
    for stage, seconds in report["timings"].items():
        print(f"  {stage:8s} {seconds:8.2f} s")
    print(
        f"whole run {wall:.2f} s (start-up included): {made / wall:,.0f} digests/s, "
        f"{wall / max(made, 1) * 1e3:.2f} ms per digest"
    )
    # the workers are the run's children, waited for: their CPU is counted in its usage
    cpu = usage.ru_utime + usage.ru_stime
    print(
        f"CPU of the run and its digest workers: {cpu:.2f} s, "
        f"{cpu / max(made, 1) * 1e3:.2f} ms per digest (a shared host's load moves wall "
        "time more than this)"
    )
    rss = usage.ru_maxrss / 1024
    print(f"peak RSS of the run: {rss:,.0f} MiB ({rss * 1024 / args.readers:,.1f} KiB per reader)")
    tree = sampler.peak / 2**20
    print(
        f"peak RSS of the run and its digest workers together: {tree:,.0f} MiB "
        f"(summed, sampled every {sampler.every} s)"
    )
    print(
        f"store grew {grown / 2**20:,.1f} MiB in use: {grown / args.readers / 1024:,.2f} KiB "
        f"per reader-day, {grown / args.readers * 1000 / 2**20:,.2f} MiB per 1,000 readers "
        f"per day (target <= 5 KB a reader once messages are sent); on disk, file and WAL "
        f"{grown_disk / 2**20:,.1f} MiB (freed pages are reused by the next run)"
    )
    if args.keep:
        print(f"kept: {tmp}")
    else:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
