"""`digestbot schedule` stops within 10 s of a real SIGTERM whatever stage its run is in,
exits 0, and leaves no process of its own behind (its process group is empty)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from digestbot import clock
from digestbot.store import Subscriber, open_store

from .pipeline_helpers import fill_inbox
from .smtp_sink import SinkHandler, SmtpSink
from .test_deliver_support import add_subscribers

STOP_WITHIN = 10.0


def _env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTBOT_") and k != "CI"}
    env.update(
        DIGESTBOT_DB=str(tmp_path / "d.db"),
        DIGESTBOT_SECRET_KEY="test-secret-key-not-for-production",
        DIGESTBOT_INGEST_INBOX=str(tmp_path / "inbox"),
        DIGESTBOT_DIGEST_FEEDS_DIR=str(tmp_path / "feeds"),
        DIGESTBOT_DELIVERY_MAILDIR=str(tmp_path / "maildir"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
        DIGESTBOT_LOG_LEVEL="debug",  # each stage's start
    )
    env.update(settings)
    return env


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
    digestbot = str(Path(sys.executable).with_name("digestbot"))
    proc = subprocess.Popen(
        [digestbot, "schedule"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group: what is left of it can be found
    )
    seen: list[str] = []
    try:
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
        sent_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
        took = time.monotonic() - sent_at
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = "".join(seen) + rest
    assert proc.returncode == 0, err
    assert took < STOP_WITHIN, f"took {took:.1f} s to stop during {stage}\n{err}"
    assert "scheduler stopped" in err
    with pytest.raises(ProcessLookupError):  # no child of the daemon is left
        os.killpg(proc.pid, 0)
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
    err = _stop_during(tmp_path, "digests", _env(tmp_path))
    assert "send: started" not in err


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
