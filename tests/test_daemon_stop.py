"""`digestbot schedule` stops within 10 s of a real SIGTERM whatever stage its run is in,
exits 0, and leaves no process of its own behind (its process group is empty)."""

from __future__ import annotations

import subprocess
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select, update

from digestbot import clock
from digestbot.store import Digest, Subscriber, open_store

from .pipeline_helpers import (
    DIGESTBOT,
    digestbot_process,
    fill_inbox,
    live_in_group,
    stop_with_sigterm,
    subprocess_env,
)
from .smtp_sink import SinkHandler, SmtpSink
from .test_deliver_support import add_subscribers

STOP_WITHIN = 10.0


def _env(tmp_path: Path, **settings: str) -> dict[str, str]:
    return subprocess_env(tmp_path, DIGESTBOT_LOG_LEVEL="debug", **settings)  # stage starts


def _readers(tmp_path: Path, n: int, formats: str = "email") -> None:
    store = open_store(tmp_path / "d.db")
    try:
        add_subscribers(store, n)
        with store.session() as s:
            s.execute(
                update(Subscriber).values(
                    keywords=["diffusion", "language model"],
                    send_hour=0,
                    formats=formats,
                    status="active",
                    # joined a week ago: a reader who joins after this hour's send point
                    # waits for the next one
                    created_at=clock.now() - timedelta(days=7),
                    confirmed_at=clock.now() - timedelta(days=7),
                )
            )
    finally:
        store.dispose()


def _stop_during(tmp_path: Path, stage: str, env: dict[str, str]) -> str:
    """Start the daemon, SIGTERM it once its run logs ``stage: started``; its stderr."""
    seen: list[str] = []
    with digestbot_process(["schedule"], tmp_path, env, stdout=subprocess.DEVNULL) as proc:
        assert proc.stderr is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if f"{stage}: started" in line:
                break
        assert any(f"{stage}: started" in line for line in seen), "".join(seen)
        _, rest, took = stop_with_sigterm(proc, timeout=60)
    err = "".join(seen) + rest
    assert proc.returncode == 0, err
    assert took < STOP_WITHIN, f"took {took:.1f} s to stop during {stage}\n{err}"
    assert "scheduler stopped" in err
    assert live_in_group(proc.pid) == []  # no child of the daemon is left
    return err


def test_sigterm_during_ingest(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    fill_inbox(inbox)
    # many distinct dumps of the seed pages: the ingest stage takes a while
    seeds = sorted(inbox.iterdir())
    for n in range(40):
        for seed in seeds:
            (inbox / f"{n:03d}-{seed.name}").write_bytes(seed.read_bytes() + f"\n{n}\n".encode())
    _readers(tmp_path, 5)
    _stop_during(tmp_path, "ingest", _env(tmp_path))


def test_sigterm_during_digests(tmp_path: Path) -> None:
    fill_inbox(tmp_path / "inbox")
    _readers(tmp_path, 3000)
    # two workers whatever the machine's cores (0 would start one per core)
    err = _stop_during(tmp_path, "digests", _env(tmp_path, DIGESTBOT_DIGEST_WORKERS="2"))
    assert "send: started" not in err
    assert "in 2 worker processes" in err  # the stage rendered in worker processes


def test_a_run_killed_during_digests_leaves_no_worker_and_loses_nothing(
    tmp_path: Path,
) -> None:
    """SIGKILL (as the OOM killer sends it, to the run alone) while workers render and
    queue: the kernel ends the workers, their open transactions roll back, and the next
    run queues every reader's digest exactly once."""
    fill_inbox(tmp_path / "inbox")
    _readers(tmp_path, 3000)
    env = _env(tmp_path, DIGESTBOT_DIGEST_WORKERS="2")

    def queued() -> int:
        store = open_store(tmp_path / "d.db", migrate=False)
        try:
            with store.session() as s:
                return s.scalar(select(func.count()).select_from(Digest)) or 0
        finally:
            store.dispose()

    with digestbot_process(["run", "--no-send"], tmp_path, env, stdout=subprocess.DEVNULL) as proc:
        deadline = time.monotonic() + 120
        while queued() == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the workers have started queueing
        proc.kill()
        proc.wait()
        assert live_in_group(proc.pid) == []
    assert 0 < queued() < 3000  # killed mid-stage
    done = subprocess.run(
        [DIGESTBOT, "run", "--no-send", "--json"], cwd=tmp_path, env=env, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    store = open_store(tmp_path / "d.db")
    try:
        with store.session() as s:
            per_reader = s.execute(
                select(Digest.subscriber_id, func.count()).group_by(Digest.subscriber_id)
            ).all()
    finally:
        store.dispose()
    assert len(per_reader) == 3000 and {n for _, n in per_reader} == {1}


def test_sigterm_during_send(tmp_path: Path) -> None:
    fill_inbox(tmp_path / "inbox")
    _readers(tmp_path, 60)
    sink = SmtpSink(SinkHandler(stall=0.5))  # 60 messages on 4 connections: ~8 s
    sink.start()
    try:
        env = _env(
            tmp_path,
            DIGESTBOT_DELIVERY_TRANSPORT="smtp",
            DIGESTBOT_SMTP_HOST=sink.host,
            DIGESTBOT_SMTP_PORT=str(sink.port),
            DIGESTBOT_SMTP_ALLOW_TEST_SETTINGS="true",  # a sink on 127.0.0.1
        )
        _stop_during(tmp_path, "send", env)
        assert len(sink.received) < 60  # stopped, not finished
    finally:
        sink.stop()


def test_sigterm_during_feeds(tmp_path: Path) -> None:
    fill_inbox(tmp_path / "inbox")
    _readers(tmp_path, 2000, formats="rss")
    _stop_during(tmp_path, "feeds", _env(tmp_path))
