"""Rendering a run's digests in worker processes: the same messages as in one process, a
failing digest or a killed worker costs nothing, and small runs start no workers."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from digestbot.config import Config
from digestbot.pipeline import pool, run_once
from digestbot.render import many
from digestbot.store import Digest, Store, Subscriber, open_store
from digestbot.store.models import DigestMessage

from .conftest import make_config
from .pipeline_helpers import add, fill_inbox

NOON = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
READERS = 23  # spans of 50 would hold them all: the tests shrink spans and batches
KEYWORDS = (["diffusion"], ["speech"], ["language model", "reasoning"], ["video"])


def _setup(tmp_path: Path, db_url: str, **overrides: object) -> tuple[Store, Config]:
    config = make_config(tmp_path, db_url, **overrides)
    store = open_store(db_url)
    fill_inbox(config.path("ingest.inbox"))
    for n in range(READERS):
        add(store, f"reader{n}@example.org", send_hour=0, keywords=KEYWORDS[n % len(KEYWORDS)])
    return store, config


def _queued(store: Store) -> dict[str, tuple[str, bytes]]:
    with store.session() as session:
        rows = session.execute(
            select(Subscriber.email, Digest.state, DigestMessage.message)
            .join(Digest, Digest.subscriber_id == Subscriber.id)
            .join(DigestMessage, DigestMessage.digest_id == Digest.id)
        )
        return {email: (state, message) for email, state, message in rows}


@pytest.fixture
def small_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    from digestbot.pipeline import run as pipeline_run

    monkeypatch.setattr(pool, "POOL_MIN", 0)
    monkeypatch.setattr(pool, "SPAN", 4)
    monkeypatch.setattr(pipeline_run, "BATCH", 7)
    # the links' timestamps: the same second in both runs, and in the forked workers
    monkeypatch.setattr(time, "time", lambda: 1_790_000_000.25)


@pytest.mark.usefixtures("small_spans")
def test_workers_queue_the_same_messages_as_one_process(tmp_path: Path, db_url: str) -> None:
    store, alone_config = _setup(tmp_path, db_url, digest__render_processes=1)
    pooled_config = make_config(tmp_path, db_url, digest__render_processes=2)
    try:
        alone = run_once(store, alone_config, now=NOON, send=False)
        expected = _queued(store)
        with store.engine.begin() as conn:  # the same readers and papers, nothing queued
            for table in ("digest_messages", "digest_items", "digests"):
                conn.execute(text(f"DELETE FROM {table}"))
            conn.execute(text("UPDATE subscribers SET last_period = NULL, last_digest_at = NULL"))
        assert pool.processes_for(pooled_config, READERS) == 2
        pooled = run_once(store, pooled_config, now=NOON, send=False)
        got = _queued(store)
    finally:
        store.dispose()
    assert alone.status == pooled.status == "ok"
    assert (pooled.due, pooled.queued) == (alone.due, alone.queued) == (READERS, len(expected))
    assert len(expected) > READERS // 2  # most readers have a digest to compare
    assert [(o.subscriber_id, o.state) for o in pooled.digests] == [
        (o.subscriber_id, o.state) for o in alone.digests
    ]
    assert got == expected  # byte for byte


def fail_for_reader_3(subscriber: Any, entries: Any, **kwargs: Any) -> Any:
    if subscriber.email == "reader3@example.org":
        raise ZeroDivisionError("a bug in one reader's digest")
    return _real_render_digest(subscriber, entries, **kwargs)


_real_render_digest = many.render_digest


@pytest.mark.usefixtures("small_spans")
def test_a_digest_failing_in_a_worker_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(many, "render_digest", fail_for_reader_3)  # inherited by the fork
    store, config = _setup(tmp_path, str(tmp_path / "d.db"), digest__render_processes=2)
    try:
        report = run_once(store, config, now=NOON, send=False)
        failed = [o for o in report.digests if o.state == "failed"]
        with store.session() as session:
            reader3 = session.scalar(
                select(Subscriber.id).where(Subscriber.email.like("reader3@%"))
            )
        assert [(o.subscriber_id, o.error) for o in failed] == [
            (reader3, "render: ZeroDivisionError: a bug in one reader's digest")
        ]
        assert report.status == "partial"
        assert (
            len(_queued(store)) == report.queued == len(report.digests) - 1 - report.count("empty")
        )
    finally:
        store.dispose()


def kill_worker_on_reader_9(name: str, jobs: list[tuple[int, str, list[Any]]]) -> Any:
    if any(sub_id == 10 for sub_id, _, _ in jobs):  # reader9@ was added tenth
        os.kill(os.getpid(), signal.SIGKILL)
    return _real_render_span(name, jobs)


_real_render_span = pool._render_span


@pytest.mark.usefixtures("small_spans")
def test_a_killed_worker_costs_no_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(pool, "_render_span", kill_worker_on_reader_9)
    store, config = _setup(tmp_path, str(tmp_path / "k.db"), digest__render_processes=2)
    spools = set(Path("/dev/shm").glob("digestbot-render-*"))
    try:
        report = run_once(store, config, now=NOON, send=False)
        assert report.status == "ok", report.as_dict()
        assert report.due == READERS and report.count("failed") == 0
        assert {o.subscriber_id for o in report.digests} == set(range(1, READERS + 1))
        assert len(_queued(store)) == report.queued > 0
        assert "render workers failed" in caplog.text
        assert set(Path("/dev/shm").glob("digestbot-render-*")) == spools  # its spool is gone
    finally:
        store.dispose()


def test_small_runs_and_one_process_start_no_workers(tmp_path: Path) -> None:
    config = make_config(tmp_path, str(tmp_path / "x.db"))
    cores = len(os.sched_getaffinity(0))
    assert pool.processes_for(config, pool.POOL_MIN - 1) == 1
    assert pool.processes_for(config, pool.POOL_MIN) == (cores if cores > 1 else 1)
    three = make_config(tmp_path, str(tmp_path / "x.db"), digest__render_processes=3)
    assert pool.processes_for(three, pool.POOL_MIN) == 3
    one = make_config(tmp_path, str(tmp_path / "x.db"), digest__render_processes=1)
    assert pool.processes_for(one, 10**6) == 1


def test_spans_travel_through_the_pipe_when_the_spool_is_unusable(tmp_path: Path) -> None:
    from digestbot.errors import RenderError

    from .test_render import CONFIG
    from .test_render_helpers import NOW, entries, reader

    digests = [many.render_job((reader(i), entries(3), "p"), CONFIG, NOW) for i in (1, 2)]
    results = [digests[0], None, ValueError("bad"), digests[1]]
    expected = [d.as_bytes() for d in digests]  # type: ignore[union-attr]

    inline = many.pack_span(results, str(tmp_path / "missing"), "1.msgs")
    assert inline[1] == ""  # no folder: the messages went inline
    with many.spool() as folder:
        spooled = many.pack_span(results, folder, "1.msgs")
        assert spooled[1] == os.path.join(folder, "1.msgs")
        assert os.path.getsize(spooled[1]) == sum(map(len, expected))
        for span in (inline, spooled):
            back = many.unpack_span(span)
            assert [r.as_bytes() for r in back if isinstance(r, many.RenderedDigest)] == expected
            assert back[1] is None
            assert isinstance(back[2], RenderError) and str(back[2]).startswith("ValueError: bad")
        assert not os.listdir(folder)  # read, then removed


def test_a_reader_gone_before_rendering_is_left_for_queueing_to_skip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digestbot.ingest import ingest_inbox
    from digestbot.scoring.picks import Pick
    from digestbot.store import Paper

    store, config = _setup(tmp_path, str(tmp_path / "g.db"))
    monkeypatch.setattr(pool, "_WORKER", None)
    try:
        ingest_inbox(store, config.path("ingest.inbox"), now=NOON)
        with store.session() as session:
            ids = list(session.scalars(select(Paper.id).order_by(Paper.id).limit(3)))
        picks = [Pick(paper_id, 0.5, matched=("diffusion",)) for paper_id in ids]
        with many.spool() as folder:
            pool._start(store, config, NOON, folder)  # what a forked worker runs first
            assert pool._WORKER is not None and pool._WORKER.store is not store
            span = pool._render_span("1.msgs", [(1, "p", picks), (READERS + 5, "p", picks)])
            first, gone = many.unpack_span(span)
            pool._WORKER.store.dispose()
        assert gone is None  # no such reader: _queue reports them skipped
        assert isinstance(first, many.RenderedDigest) and first.paper_ids == ids
        assert b"To: reader0@example.org" in first.as_bytes()
    finally:
        store.dispose()


@pytest.mark.usefixtures("small_spans")
def test_a_run_renders_in_process_when_workers_cannot_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_spool() -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pool, "spool", no_spool)
    store, config = _setup(tmp_path, str(tmp_path / "s.db"), digest__render_processes=2)
    try:
        report = run_once(store, config, now=NOON, send=False)
        assert report.status == "ok" and report.due == READERS
        assert len(_queued(store)) == report.queued > 0
        assert "cannot start render workers ([Errno 28] No space left on device)" in caplog.text
    finally:
        store.dispose()


# A run in its own process, its workers stalled on a reader so it can be killed mid-render.
_KILLED_RUN = """
import os, sys, time
from datetime import datetime, UTC
from digestbot.pipeline import pool, run as pipeline_run, run_once
from digestbot.store import open_store
from tests.conftest import make_config
from pathlib import Path

tmp, db = Path(sys.argv[1]), sys.argv[2]
real = pool._render_span

def stall(name, jobs):
    (tmp / f"worker-{os.getpid()}").write_text("")
    time.sleep(60)
    return real(name, jobs)

pool._render_span = stall
pool.POOL_MIN, pool.SPAN, pipeline_run.BATCH = 0, 4, 7
store = open_store(db)
run_once(store, make_config(tmp, db, digest__render_processes=2),
         now=datetime(2026, 11, 22, 12, tzinfo=UTC), send=False)
"""


def test_a_run_killed_mid_render_leaves_no_worker_and_no_spool_and_loses_nothing(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    from digestbot.render.many import SPOOL_PREFIX

    db = str(tmp_path / "killed.db")
    store, config = _setup(tmp_path, db)
    try:
        root = Path(__file__).resolve().parent.parent
        run = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(tmp_path), db], cwd=root)
        deadline = time.monotonic() + 60
        while len(workers := list(tmp_path.glob("worker-*"))) < 2:
            assert run.poll() is None and time.monotonic() < deadline, "no worker started"
            time.sleep(0.05)
        spool = list(Path("/dev/shm").glob(f"{SPOOL_PREFIX}{run.pid}-*"))
        assert len(spool) == 1
        run.kill()  # SIGKILL: no cleanup of any kind in the run's process
        run.wait()
        pids = [int(w.name.split("-")[1]) for w in workers]
        while any(map(_alive, pids)):
            # gone within ORPHAN_CHECK_SECONDS; the deadline only stops a hung test
            assert time.monotonic() < deadline, f"workers {pids} outlived the run"
            time.sleep(0.05)
        assert spool[0].exists()  # left behind: the next run's spool removes it
        with many.spool():
            assert not spool[0].exists()

        report = run_once(store, config, now=NOON, send=False)  # nothing was queued: all now
        assert report.status == "ok" and report.due == READERS
        assert len(_queued(store)) == report.queued > 0
    finally:
        store.dispose()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
