"""Sending as a run sends, side by side with a plain smtplib loop, to the same sink.

The real shape (issue 18): digests of about 50 KB rendered by the render stage, an outbox
that already holds 100,000 rows of history, the default pool (smtp.pool_size), and
`digestbot send` run as a user runs it, in a process of its own, start-up included. Then
the same messages through a plain `smtplib` loop over one connection, in this process (its
start-up not counted). The sink (tests/process_sink.py) is a minimal asyncio SMTP server in
another process, so the sender, not the sink, is what is measured; its CPU is printed.

Target: digestbot at least 1.5x the smtplib loop's messages/s.

    .venv/bin/python bench/send.py [N]      (N digests, default 3,000)
"""

from __future__ import annotations

import json
import os
import random
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, select  # noqa: E402
from synthetic import synthetic_papers  # noqa: E402

from digestbot.config import default_config  # noqa: E402
from digestbot.deliver import Outgoing, enqueue_many  # noqa: E402
from digestbot.render import render_digest  # noqa: E402
from digestbot.scoring.picks import Pick  # noqa: E402
from digestbot.store import Digest, Store, Subscriber, open_store  # noqa: E402
from tests.process_sink import SinkProcess  # noqa: E402
from tests.test_deliver_support import add_subscribers  # noqa: E402

PAPERS = 20  # per digest: about 50 KB as sent
HISTORY = 100_000
BATCH = 500
PERIOD = "2026-11-23/daily"
NOW = datetime(2026, 11, 23, 7, tzinfo=UTC)
SECRET = "bench-secret-key-0123456789"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fill_outbox(store: Store, n: int) -> list[tuple[str, bytes]]:
    """``n`` readers with a ~50 KB digest queued each, behind 100,000 rows of sent history;
    returns (recipient, message) of the queued ones, for the smtplib loop."""
    rng = random.Random(7)
    ids = add_subscribers(store, n)
    papers = synthetic_papers(300, rng, first_id=50000)
    with store.session() as s:
        s.add_all(papers)
        subs = list(s.scalars(select(Subscriber).where(Subscriber.id.in_(ids)).order_by("id")))
        s.expunge_all()
    config = default_config(web__secret_key=SECRET)
    # history: earlier days' digests, sent, their bytes gone (as retention leaves them)
    days = -(-HISTORY // n)
    rows = [
        {
            "subscriber_id": sub.id,
            "period": f"{(NOW - timedelta(days=d + 1)).date()}/daily",
            "state": "sent",
            "recipient": sub.email,
            "message_id": f"<h{d}.{sub.id}@bench>",
            "subject": "history",
            "created_at": NOW - timedelta(days=d + 1),
            "sent_at": NOW - timedelta(days=d + 1),
            "attempts": 1,
        }
        for d in range(days)
        for sub in subs
    ][:HISTORY]
    with store.session() as s:
        s.execute(insert(Digest), rows)
    out: list[tuple[str, bytes]] = []
    for start in range(0, n, BATCH):
        batch = []
        for sub in subs[start : start + BATCH]:
            entries = [
                (p, Pick(p.id, round(0.9 - i * 0.01, 3), matched=("diffusion",)))
                for i, p in enumerate(rng.sample(papers, PAPERS))
            ]
            r = render_digest(sub, entries, period=PERIOD, config=config, now=NOW)
            assert r is not None
            data = r.as_bytes()
            # smtplib sends bytes as given: the wire's CRLF line ends, made once here
            out.append((sub.email, data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")))
            batch.append(Outgoing(sub, PERIOD, data, r.message_id, r.subject, []))
        with store.session() as s:
            assert None not in enqueue_many(s, batch)
    return out


def send_with_digestbot(db: str, sink: SinkProcess, tmp: Path) -> tuple[float, float, dict]:
    """`digestbot send` in its own process: wall seconds (start-up included), sink CPU."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTBOT_")}
    env.update(
        DIGESTBOT_DB=db,
        DIGESTBOT_SECRET_KEY=SECRET,
        DIGESTBOT_DELIVERY_TRANSPORT="smtp",
        DIGESTBOT_SMTP_HOST=sink.host,
        DIGESTBOT_SMTP_PORT=str(sink.port),
        DIGESTBOT_SMTP_ALLOW_TEST_SETTINGS="true",  # a sink on 127.0.0.1
    )
    assert sink.proc is not None
    sink_cpu = cpu_seconds(sink.proc.pid)
    start = time.perf_counter()
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("digestbot")),
            "send",
            "--json",
            "--now",
            NOW.isoformat(),
        ],
        env=env,
        cwd=tmp,
        capture_output=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"digestbot send exited {done.returncode}:\n{done.stderr.decode()[-3000:]}")
    return wall, cpu_seconds(sink.proc.pid) - sink_cpu, json.loads(done.stdout)


def send_with_smtplib(messages: list[tuple[str, bytes]], sink: SinkProcess) -> tuple[float, float]:
    """The plain loop: one connection, one sendmail per message."""
    assert sink.proc is not None
    sink_cpu = cpu_seconds(sink.proc.pid)
    start = time.perf_counter()
    with smtplib.SMTP(sink.host, sink.port) as smtp:
        for recipient, data in messages:
            smtp.sendmail("digestbot@bench.example", [recipient], data)
    return time.perf_counter() - start, cpu_seconds(sink.proc.pid) - sink_cpu


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    tmp = Path(tempfile.mkdtemp(prefix="bench-send-"))
    sink = SinkProcess(tmp / "sink.log").start()
    db = str(tmp / "bench.db")
    pool = default_config()["smtp.pool_size"]
    try:
        store = open_store(db)
        t = time.perf_counter()
        messages = fill_outbox(store, n)
        store.dispose()
        size = sum(len(m) for _, m in messages) / n
        print(
            f"cpu_count={os.cpu_count()} digests={n:,} of {size / 1000:.1f} KB, outbox history "
            f"{HISTORY:,} rows, pool {pool} (the default); set-up {time.perf_counter() - t:.1f} s"
        )
        wall, sink_cpu, report = send_with_digestbot(db, sink, tmp)
        assert report["sent"] == n and sink.count() == n, (report, sink.count())
        ours = n / wall
        print(
            f"digestbot send (own process, start-up included): {wall:6.2f} s {ours:7.0f} msg/s; "
            f"sink CPU {sink_cpu / n * 1000:.2f} ms/message"
        )
        wall, sink_cpu = send_with_smtplib(messages, sink)
        assert sink.count() == 2 * n
        plain = n / wall
        print(
            f"plain smtplib loop, one connection:               {wall:6.2f} s {plain:7.0f} msg/s; "
            f"sink CPU {sink_cpu / n * 1000:.2f} ms/message"
        )
        ratio = ours / plain
        print(
            f"ratio {ratio:.2f}x (target >= 1.5x): {'met' if ratio >= 1.5 else 'NOT met'}; "
            f"load average {os.getloadavg()[0]:.1f}"
        )
    finally:
        sink.stop()
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
