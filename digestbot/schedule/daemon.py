"""`digestbot schedule`: cron triggers from the configuration drive the pipeline.

Three jobs: ingest the inbox every few minutes, the digest job (the whole run, fetching the
sources in ``fetch.sources`` first) at least hourly, and an outbox job that retries digests
waiting after a temporary failure; a fourth reads the bounce mailbox when ``mailbox.host`` is
set. They run one at a time on a single worker thread, and each takes the run lock, so a
`digestbot run` started by hand waits its turn rather than racing the daemon.

Missed jobs (a sleeping laptop, a restart) are coalesced into one run within
``schedule.misfire_grace_seconds``; the digest job is idempotent per period anyway, so a
late run sends at most one digest per subscriber and period.

SIGTERM and SIGINT set a stop event: no new job starts, the running one stops between
stages and the sender stops after the message in flight. Unsent digests stay in the
outbox for the next run, so stopping is always safe.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from ..config import Config
from ..deliver.mailbox import MailboxReport, read_mailbox
from ..errors import DigestbotError, LockError
from ..pipeline import RunReport, ingest_once, run_once, send_once
from ..signals import on_stop_signals
from ..store import Store

log = logging.getLogger("digestbot.schedule")

R = TypeVar("R", RunReport, MailboxReport)


@dataclass
class Jobs:
    """The daemon's jobs; each can be called directly with a moment to replay."""

    store: Store
    config: Config
    stop: threading.Event = field(default_factory=threading.Event)

    def ingest(self, now: datetime | None = None) -> RunReport | None:
        return self._guard("ingest", lambda: ingest_once(self.store, self.config, now=now))

    def digest(self, now: datetime | None = None) -> RunReport | None:
        return self._guard(
            "digest", lambda: run_once(self.store, self.config, now=now, stop=self.stop)
        )

    def send(self, now: datetime | None = None) -> RunReport | None:
        return self._guard(
            "send", lambda: send_once(self.store, self.config, now=now, stop=self.stop)
        )

    def mailbox(self, now: datetime | None = None) -> MailboxReport | None:
        # now: every job takes one; reading the mailbox has nothing that depends on it
        return self._guard("mailbox", lambda: read_mailbox(self.store, self.config))

    def _guard(self, name: str, work: Callable[[], R]) -> R | None:
        if self.stop.is_set():
            return None
        try:
            report = work()
        except LockError as exc:
            log.warning("%s job skipped: %s", name, exc)
            return None
        except DigestbotError as exc:
            log.error("%s job failed: %s%s", name, exc, f" (hint: {exc.hint})" if exc.hint else "")
            return None
        except Exception:  # the daemon outlives a bug in one job; the next tick tries again
            log.exception("%s job crashed", name)
            return None
        if report.did_something or report.failures:
            level = logging.WARNING if report.failures else logging.INFO
            log.log(level, "%s job: %s", name, "; ".join(report.summary_lines()))
        else:
            log.debug("%s job: nothing to do", name)
        return report


def build_scheduler(config: Config, jobs: Jobs) -> BackgroundScheduler:
    """A scheduler (not started) with the jobs and triggers the configuration asks for."""
    tz = config["schedule.timezone"]
    scheduler = BackgroundScheduler(
        timezone=tz,
        # one worker: jobs never run side by side, and a job that is still running when
        # its next tick comes is not doubled (max_instances=1, the tick is skipped)
        executors={"default": ThreadPoolExecutor(max_workers=1)},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": config["schedule.misfire_grace_seconds"],
        },
    )
    for job_id, func, setting, name in (
        ("ingest", jobs.ingest, "schedule.ingest_cron", "ingest the inbox"),
        ("digest", jobs.digest, "schedule.digest_cron", "the digest run"),
        ("send", jobs.send, "schedule.send_cron", "retry the outbox"),
    ):
        trigger = CronTrigger.from_crontab(config[setting], timezone=tz)
        scheduler.add_job(func, trigger, id=job_id, name=name)
    if config["mailbox.host"]:
        trigger = CronTrigger.from_crontab(config["schedule.mailbox_cron"], timezone=tz)
        scheduler.add_job(
            jobs.mailbox, trigger, id="mailbox", name="read bounces and unsubscribe mails"
        )
    if config["schedule.run_at_start"]:
        # catch up at once after downtime instead of waiting for the next tick
        scheduler.add_job(jobs.digest, id="digest-at-start", name="the digest run at start")
    return scheduler


def run_daemon(
    store: Store,
    config: Config,
    *,
    stop: threading.Event | None = None,
) -> int:
    """Run until SIGTERM or SIGINT (or ``stop`` is set); return the exit code (0)."""
    stop = stop or threading.Event()
    jobs = Jobs(store, config, stop)
    scheduler = build_scheduler(config, jobs)

    def on_signal(signum: int, _frame: object) -> None:
        if not stop.is_set():
            log.info("%s received: finishing the job in progress", signal.Signals(signum).name)
        stop.set()

    with on_stop_signals(on_signal):
        scheduler.start()
        try:
            for job in scheduler.get_jobs():
                log.info("job %r (%s): next run %s", job.id, job.name, job.next_run_time)
            log.info("scheduler started; stop with SIGTERM or Ctrl-C")
            while not stop.wait(1.0):
                pass
        finally:
            stop.set()
            scheduler.shutdown(wait=True)
            log.info("scheduler stopped")
    return 0
