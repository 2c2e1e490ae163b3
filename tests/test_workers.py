"""Real `digestbot send` processes against an aiosmtpd sink in a process of its own:
SIGKILL halfway then a rerun (SQLite), two senders at once (SQLite), and four workers on
PostgreSQL with one killed halfway."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from digestbot.deliver import state_counts
from digestbot.store import Store, open_store

from .conftest import PUBLIC_MAIL_ENV
from .process_sink import SinkProcess
from .test_deliver_support import seed_outbox

ROOT = Path(__file__).resolve().parent.parent
POOL = 4


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SinkProcess]:
    proc = SinkProcess(tmp_path / "sink.log").start()
    yield proc
    proc.stop()


def _env(sink: SinkProcess, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTBOT_")}
    env.update(
        DIGESTBOT_DELIVERY_TRANSPORT="smtp",
        DIGESTBOT_SMTP_HOST="127.0.0.1",
        DIGESTBOT_SMTP_PORT=str(sink.port),
        DIGESTBOT_SMTP_POOL_SIZE=str(POOL),
        DIGESTBOT_SMTP_TIMEOUT="10",
        DIGESTBOT_DELIVERY_BATCH_SIZE="50",
        XDG_CONFIG_HOME="/nonexistent",
        **PUBLIC_MAIL_ENV,
    )
    env.update(extra)
    return env


def _send(db: str, sink: SinkProcess, cwd: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "digestbot", "send", "--db", db, *args],
        cwd=cwd,
        env=_env(sink, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_when(proc: subprocess.Popen[str], sink: SinkProcess, received: int) -> None:
    deadline = time.monotonic() + 120
    while sink.count() < received:
        assert proc.poll() is None, f"sender ended before the kill: {proc.communicate()}"
        assert time.monotonic() < deadline, "the sender made no progress"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _check_delivery(
    store: Store, sink: SinkProcess, addresses: list[str], max_dupes: int
) -> Counter[str]:
    got = Counter(rcpt for rcpt, _ in sink.lines())
    assert set(got) == set(addresses), "some digest never arrived"
    dupes = sum(n - 1 for n in got.values())
    assert dupes <= max_dupes, f"{dupes} duplicates (allowed: {max_dupes})"
    # the duplicates, if any, carry the same Message-ID, so a mail system can drop them
    ids: dict[str, set[str]] = {}
    for rcpt, msgid in sink.lines():
        ids.setdefault(rcpt, set()).add(msgid)
    assert all(len(v) == 1 for v in ids.values())
    assert state_counts(store) == {"sent": len(addresses)}
    return got


def test_sigkill_halfway_then_rerun_delivers_all(tmp_path: Path, sink: SinkProcess) -> None:
    db = str(tmp_path / "digestbot.db")
    store = open_store(db)
    addresses = seed_outbox(store, 1000)
    first = _send(db, sink, tmp_path)
    _kill_when(first, sink, 500)
    counts = state_counts(store)
    assert counts.get("sent", 0) < 1000 and counts.get("sending", 0) > 0
    rerun = _send(db, sink, tmp_path)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert out.startswith("Sent "), out
    _check_delivery(store, sink, addresses, max_dupes=POOL)
    store.dispose()


def test_two_senders_at_once_never_send_twice(tmp_path: Path, sink: SinkProcess) -> None:
    db = str(tmp_path / "digestbot.db")
    store = open_store(db)
    addresses = seed_outbox(store, 600)
    # each at most 300 messages/s, so neither can finish the 600 before the other starts
    # (alone they go in 0.3 s, and one found nothing due): both send, at the same time
    procs = [_send(db, sink, tmp_path, DIGESTBOT_SMTP_RATE="300") for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert all(out.startswith("Sent ") for out, _ in outs), outs
    got = _check_delivery(store, sink, addresses, max_dupes=0)
    assert sum(got.values()) == 600
    store.dispose()


def test_four_workers_on_postgresql_one_killed(
    tmp_path: Path, sink: SinkProcess, pg_url: str
) -> None:
    store = open_store(pg_url)
    addresses = seed_outbox(store, 2000)
    lease = {"DIGESTBOT_DELIVERY_LEASE_SECONDS": "3"}
    workers = [_send(pg_url, sink, tmp_path, "--worker", **lease) for _ in range(4)]
    _kill_when(workers[0], sink, 1000)
    outs = [w.communicate(timeout=300) for w in workers[1:]]
    assert [w.returncode for w in workers[1:]] == [0, 0, 0], outs
    for out, _ in outs:
        assert out.startswith("worker "), out
    _check_delivery(store, sink, addresses, max_dupes=POOL)
    store.dispose()
