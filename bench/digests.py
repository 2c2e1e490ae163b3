"""The digest stage of a run, as `digestbot run` does it: score, render and queue one
digest per due reader, in SQLite, in the run's own process.

    .venv/bin/python bench/digests.py [--readers N] [--papers M]

Each reader has three keywords from the synthetic vocabulary, so nearly every digest is
full (10 papers).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text, update  # noqa: E402
from synthetic import WORDS, synthetic_papers  # noqa: E402

from digestbot.config import default_config  # noqa: E402
from digestbot.pipeline import run_once  # noqa: E402
from digestbot.store import Store, Subscriber, open_store  # noqa: E402
from tests.test_deliver_support import add_subscribers  # noqa: E402

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


def _cpu() -> float:
    """CPU seconds of this process and of its finished children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _reset(store: Store) -> None:
    with store.engine.begin() as conn:
        for table in ("digest_messages", "digest_items", "digests"):
            conn.execute(text(f"DELETE FROM {table}"))
        conn.execute(text("UPDATE subscribers SET last_period = NULL, last_digest_at = NULL"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readers", type=int, default=10_000)
    parser.add_argument("--papers", type=int, default=1_000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-digests-"))
    db = str(tmp / "bench.db")
    store = open_store(db)
    rng = random.Random(7)
    with store.session() as s:
        s.add_all(synthetic_papers(args.papers, rng))
    ids = add_subscribers(store, args.readers)
    with store.session() as s:
        for sub_id in ids:
            s.execute(
                update(Subscriber)
                .where(Subscriber.id == sub_id)
                .values(keywords=rng.sample(WORDS, 3), send_hour=0, formats="email")
            )
    print(f"cpu_count: {os.cpu_count()}; {args.readers:,} readers, {args.papers:,} papers")
    try:
        _reset(store)
        config = default_config(
            store__db=db,
            ingest__inbox=str(tmp / "inbox"),
            digest__feeds_dir=str(tmp / "feeds"),
            web__secret_key="bench-secret-key-0123456789",
        )
        cpu, start = _cpu(), time.perf_counter()
        report = run_once(store, config, now=NOW, send=False)
        wall, cpu = time.perf_counter() - start, _cpu() - cpu
        stage = report.timings["digests"]
        assert report.status == "ok" and report.queued > 0.9 * args.readers, report.as_dict()
        print(
            f"{report.queued:,} digests queued; digest stage "
            f"{stage:.2f} s = {report.queued / stage:,.0f} digests/s (score, render, "
            f"queue); whole run {wall:.2f} s, {cpu / report.queued * 1e3:.2f} ms CPU each"
        )
    finally:
        store.dispose()
        shutil.rmtree(tmp)  # ~650 MB of messages


if __name__ == "__main__":
    main()
