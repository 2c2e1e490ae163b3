"""Delivery throughput: 5,000 digests of about 16 KB to an aiosmtpd sink in another process on
loopback, outbox in SQLite.

1. send: the outbox already full; `send_due` with 16 pooled connections (target >= 800/s).
2. end to end, as the pipeline does it: render and build each digest with the render stage
   (`render_digest`, as many papers as make about 16 KB), queue them 500 per transaction with
   `enqueue_many`, send them and record them (target >= 500/s). Rendering is timed on its own
   line: another stage's cost, measured by bench/render.py.

The sink is pure-Python aiosmtpd and shares the machine's cores with the sender, so these
figures are a floor for a real relay. Run: .venv/bin/python bench/send.py [N]
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402
from synthetic import synthetic_papers  # noqa: E402

from digestbot.config import Config, default_config  # noqa: E402
from digestbot.deliver import Outgoing, enqueue_many, send_due, state_counts  # noqa: E402
from digestbot.render import render_digest  # noqa: E402
from digestbot.scoring.picks import Pick  # noqa: E402
from digestbot.store import Paper, Store, Subscriber, open_store  # noqa: E402
from tests.process_sink import SinkProcess  # noqa: E402
from tests.test_deliver_support import add_subscribers, seed_outbox  # noqa: E402

SIZE = 16_000
POOL = 16
BATCH = 500  # digests queued per transaction, as the pipeline batches them
E2E_PERIOD = "2026-11-23/daily"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def store_papers(store: Store, n: int, rng: random.Random) -> list[Paper]:
    """Synthetic papers, stored (digest items refer to them) and returned for rendering."""
    papers = synthetic_papers(n, rng, first_id=50000)
    with store.session() as s:
        s.add_all(papers)
    return papers


def papers_for_size(papers: list[Paper], config: Config, now: datetime) -> int:
    """How many papers make a rendered digest closest to SIZE bytes."""
    sub = Subscriber(
        id=0, email="size@example.org", name="", keywords=[], frequency="daily",
        timezone="UTC", formats="email", pref_token="p" * 22, feed_token="f" * 22,
    )  # fmt: skip

    def size(k: int) -> int:
        entries = [(p, Pick(p.id, 0.9, matched=("diffusion",))) for p in papers[:k]]
        r = render_digest(sub, entries, period=E2E_PERIOD, config=config, now=now)
        assert r is not None
        return len(r.as_bytes())

    return min(range(1, 11), key=lambda k: abs(size(k) - SIZE))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    tmp = Path(tempfile.mkdtemp(prefix="bench-send-"))
    sink = SinkProcess(tmp / "sink.log").start()
    db = str(tmp / "bench.db")
    store = open_store(db)
    config = default_config(
        store__db=db,
        delivery__transport="smtp",
        smtp__host="127.0.0.1",
        smtp__port=sink.port,
        smtp__pool_size=POOL,
        smtp__per_connection=1000,
        delivery__batch_size=200,
        # a sink on this machine: loopback links and a localhost sender are fine here
        smtp__allow_test_settings=True,
    )
    print(f"cpu_count={os.cpu_count()} digests={n} size~{SIZE // 1000} KB connections={POOL}")
    try:
        t = time.perf_counter()
        seed_outbox(store, n, size=SIZE)
        print(f"seed outbox:        {time.perf_counter() - t:6.2f} s (not measured below)")
        assert sink.proc is not None
        sink_cpu, own_cpu = cpu_seconds(sink.proc.pid), time.process_time()
        report = send_due(store, config)
        assert report.sent == n and sink.count() == n, (report.as_dict(), sink.count())
        sink_cpu = cpu_seconds(sink.proc.pid) - sink_cpu
        own_cpu = time.process_time() - own_cpu
        print(f"send (16 conns):    {report.elapsed:6.2f} s  {report.rate:7.0f} messages/s")
        print(
            f"  CPU: sender {own_cpu:.2f} s ({own_cpu / n * 1000:.2f} ms/message), "
            f"sink {sink_cpu:.2f} s ({sink_cpu / n * 1000:.2f} ms/message); "
            f"load average {os.getloadavg()[0]:.1f}"
        )

        # end to end, as the pipeline does it: render and build each digest with the render
        # stage, queue them a batch per transaction, then send and record
        sub_ids = add_subscribers(store, n, prefix="e2e")
        papers = store_papers(store, 200, random.Random(7))
        now = datetime(2026, 11, 23, 7, tzinfo=UTC)
        rcfg = default_config(web__secret_key="bench-secret-key-0123456789")
        k = papers_for_size(papers, rcfg, now)
        rng = random.Random(11)
        sink_cpu, own_cpu = cpu_seconds(sink.proc.pid), time.process_time()
        t = time.perf_counter()
        rendering = queueing = 0.0
        size = 0
        with store.session() as s:
            subs = list(
                s.scalars(select(Subscriber).where(Subscriber.id.in_(sub_ids)).order_by("id"))
            )
        for start in range(0, n, BATCH):
            t1 = time.perf_counter()
            batch = []
            for sub in subs[start : start + BATCH]:
                chosen = rng.sample(papers, k)
                entries = [
                    (p, Pick(p.id, round(0.9 - i * 0.05, 3), matched=("diffusion",)))
                    for i, p in enumerate(chosen)
                ]
                r = render_digest(sub, entries, period=E2E_PERIOD, config=rcfg, now=now)
                assert r is not None
                data = r.as_bytes()
                size += len(data)
                picks = [pick for _, pick in entries]
                batch.append(Outgoing(sub, E2E_PERIOD, data, r.message_id, r.subject, picks))
            t2 = time.perf_counter()
            with store.session() as s:
                assert None not in enqueue_many(s, batch)
            rendering += t2 - t1
            queueing += time.perf_counter() - t2
        report2 = send_due(store, config)
        total = time.perf_counter() - t
        sink_cpu = cpu_seconds(sink.proc.pid) - sink_cpu
        own_cpu = time.process_time() - own_cpu
        assert report2.sent == n and sink.count() == 2 * n
        assert state_counts(store) == {"sent": 2 * n}
        e2e_rate = n / total
        print(
            f"end to end:         {total:6.2f} s  {e2e_rate:7.0f} messages/s "
            f"({k} papers, {size / n / 1000:.1f} KB each)"
        )
        print(
            f"  render+build {rendering:.2f} s ({rendering / n * 1000:.2f} ms/message), "
            f"enqueue {queueing:.2f} s ({queueing / n * 1000:.2f} ms/message, "
            f"{BATCH} per transaction), send+record {report2.elapsed:.2f} s "
            f"({n / report2.elapsed:.0f} messages/s)"
        )
        print(
            f"  CPU: this process {own_cpu:.2f} s ({own_cpu / n * 1000:.2f} ms/message), "
            f"sink {sink_cpu:.2f} s ({sink_cpu / n * 1000:.2f} ms/message); "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        print(
            f"targets: send {report.rate:.0f}/s vs >= 800/s: "
            f"{'met' if report.rate >= 800 else 'NOT met'}; end to end {e2e_rate:.0f}/s vs "
            f">= 500/s: {'met' if e2e_rate >= 500 else 'NOT met'}"
        )
    finally:
        sink.stop()
        store.dispose()
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
