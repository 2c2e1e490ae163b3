"""The daemon: its APScheduler wiring, the real pipeline driven hour by hour with a
controlled clock, and a clean exit on SIGTERM."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from digestbot.config import Config
from digestbot.schedule import Jobs, build_scheduler
from digestbot.store import Store, open_store

from .conftest import make_config
from .pipeline_helpers import (
    add,
    digestbot_process,
    fill_inbox,
    maildir_recipients,
    stop_with_sigterm,
    subprocess_env,
)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Store, Config]]:
    db = str(tmp_path / "d.db")
    # every due period yields a message even when no new papers arrived since the last one
    config = make_config(tmp_path, db, digest__send_empty=True)
    store = open_store(db)
    fill_inbox(config.path("ingest.inbox"), count=2)
    yield store, config
    store.dispose()


def test_jobs_come_from_the_configuration(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        str(tmp_path / "d.db"),
        schedule__ingest_cron="*/7 * * * *",
        schedule__digest_cron="5 * * * *",
        schedule__misfire_grace_seconds=1234,
        schedule__timezone="Europe/Berlin",
    )
    store = open_store(config["store.db"])
    try:
        jobs = Jobs(store, config)
        scheduler = build_scheduler(config, jobs)
        scheduler.start(paused=True)
        try:
            by_id = {job.id: job for job in scheduler.get_jobs()}
            assert set(by_id) == {"ingest", "digest", "send", "digest-at-start"}
            for job_id, expr in (
                ("ingest", "*/7 * * * *"),
                ("digest", "5 * * * *"),
                ("send", "*/5 * * * *"),
            ):
                trigger = by_id[job_id].trigger
                assert isinstance(trigger, CronTrigger)
                expected = CronTrigger.from_crontab(expr, timezone="Europe/Berlin")
                assert str(trigger) == str(expected)
                assert str(trigger.timezone) == "Europe/Berlin"
            assert isinstance(by_id["digest-at-start"].trigger, DateTrigger)
            for job in by_id.values():
                assert job.coalesce is True
                assert job.max_instances == 1
                assert job.misfire_grace_time == 1234
            assert by_id["digest"].func == jobs.digest
            assert by_id["ingest"].func == jobs.ingest
        finally:
            scheduler.shutdown(wait=False)
        # one job at a time: two jobs due at once run one after the other (asked of the
        # scheduler's behaviour, not of its private executor)
        spans: list[tuple[float, float]] = []

        def job() -> None:
            start = time.monotonic()
            time.sleep(0.2)
            spans.append((start, time.monotonic()))

        scheduler = build_scheduler(config.replace(schedule__run_at_start=False), jobs)
        for name in ("a", "b"):
            scheduler.add_job(job, id=name, next_run_time=datetime.now(UTC))
        scheduler.start()
        try:
            deadline = time.monotonic() + 10
            while len(spans) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            scheduler.shutdown(wait=True)
        assert len(spans) == 2
        first, second = sorted(spans)
        assert second[0] >= first[1]
        quiet = build_scheduler(config.replace(schedule__run_at_start=False), jobs)
        assert {j.id for j in quiet.get_jobs()} == {"ingest", "digest", "send"}
    finally:
        store.dispose()


def _drive(jobs: Jobs, start: datetime, hours: int) -> list[tuple[datetime, str, str]]:
    """Call the digest job at the top of every hour; return (when, email, period) sent."""
    emails: dict[int, str] = {}
    delivered = []
    for step in range(hours):
        now = start + timedelta(hours=step)
        report = jobs.digest(now=now)
        assert report is not None and report.status in ("ok", "nothing"), report
        for outcome in report.digests:
            if outcome.state == "queued":
                if outcome.subscriber_id not in emails:
                    from digestbot.store import Subscriber

                    with jobs.store.session() as session:
                        sub = session.get(Subscriber, outcome.subscriber_id)
                        emails[outcome.subscriber_id] = sub.email  # type: ignore[union-attr]
                delivered.append((now, emails[outcome.subscriber_id], outcome.period))
        assert report.sent == report.queued
    return delivered


@pytest.mark.slow
def test_weekly_tokyo_subscriber_gets_one_digest_a_week_at_eight(setup: tuple) -> None:
    store, config = setup
    add(store, "kenji@example.org", frequency="weekly", weekday=4, timezone="Asia/Tokyo")
    start = datetime(2026, 11, 1, 15, tzinfo=UTC)  # Monday 00:00 in Tokyo; three weeks follow
    delivered = _drive(Jobs(store, config), start, 21 * 24)
    tokyo = ZoneInfo("Asia/Tokyo")
    local = [when.astimezone(tokyo) for when, _, _ in delivered]
    assert [(t.weekday(), t.hour, t.minute) for t in local] == [(4, 8, 0)] * 3
    assert [p for _, _, p in delivered] == ["2026-W45/weekly", "2026-W46/weekly", "2026-W47/weekly"]
    assert maildir_recipients(config.path("delivery.maildir")) == {"kenji@example.org": 3}


@pytest.mark.slow
def test_daily_berlin_subscriber_across_the_dst_change(setup: tuple) -> None:
    store, config = setup
    add(store, "ada@example.org", timezone="Europe/Berlin", send_hour=8)
    start = datetime(2026, 3, 26, 0, tzinfo=UTC)  # clocks go forward on Sunday the 29th
    delivered = _drive(Jobs(store, config), start, 7 * 24)
    berlin = ZoneInfo("Europe/Berlin")
    days = [when.astimezone(berlin) for when, _, _ in delivered]
    assert [(t.day, t.hour) for t in days] == [(d, 8) for d in range(26, 32)] + [(1, 8)]
    utc_hours = [when.hour for when, _, _ in delivered]
    assert utc_hours == [7, 7, 7, 6, 6, 6, 6]
    assert maildir_recipients(config.path("delivery.maildir")) == {"ada@example.org": 7}


@pytest.mark.slow
def test_scheduler_down_for_three_days_sends_one_catch_up_digest(setup: tuple) -> None:
    store, config = setup
    add(store, "ada@example.org", timezone="Europe/Berlin", send_hour=8)
    jobs = Jobs(store, config)
    day1 = datetime(2026, 11, 2, 0, tzinfo=UTC)
    before = _drive(jobs, day1, 24)  # Monday: one digest at 08:00
    # down from Tuesday 00:00 UTC until Thursday 11:00 UTC (12:00 in Berlin)
    back = datetime(2026, 11, 5, 11, tzinfo=UTC)
    after = _drive(jobs, back, 24)
    monday_8 = datetime(2026, 11, 2, 7, tzinfo=UTC)
    assert [(w, p) for w, _, p in before] == [(monday_8, "2026-11-02/daily")]
    assert [(w, p) for w, _, p in after] == [
        (back, "2026-11-05/daily"),  # one catch-up at once, not one per missed day
        (datetime(2026, 11, 6, 7, tzinfo=UTC), "2026-11-06/daily"),  # then on time again
    ]
    assert maildir_recipients(config.path("delivery.maildir")) == {"ada@example.org": 3}


def test_a_stopped_daemon_starts_no_new_job(setup: tuple) -> None:
    store, config = setup
    add(store, "ada@example.org", send_hour=0)
    jobs = Jobs(store, config)
    jobs.stop.set()
    assert jobs.digest(now=datetime(2026, 11, 2, 12, tzinfo=UTC)) is None
    assert maildir_recipients(config.path("delivery.maildir")) == {}


def test_a_held_lock_skips_the_job(setup: tuple, caplog: pytest.LogCaptureFixture) -> None:
    from digestbot.pipeline import run_lock

    store, config = setup
    lock = run_lock(store, config).acquire()
    try:
        assert Jobs(store, config).ingest() is None
    finally:
        lock.release()
    assert "ingest job skipped: another digestbot run is running" in caplog.text


def test_sigterm_stops_the_daemon_promptly_with_exit_0(tmp_path: Path) -> None:
    env = subprocess_env(tmp_path)
    with digestbot_process(["schedule"], tmp_path, env) as proc:
        assert proc.stderr is not None
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if "scheduler started" in line:
                break
        assert any("scheduler started" in line for line in seen), "".join(seen)
        _out, err, took = stop_with_sigterm(proc, timeout=30)
    assert proc.returncode == 0, err
    assert took < 15, f"took {took:.1f} s to stop"
    assert "SIGTERM received: finishing the job in progress" in err
    assert "scheduler stopped" in err
