"""The one-shot run: fetch, ingest, select who is due, score, render, queue, send, write feeds.

Each stage is a function of its own module; this one strings them together, times them and
turns their reports into one :class:`RunReport`. Stages are imported when they run, so
``digestbot config`` or ``digestbot --help`` do not pay for scikit-learn.
"""

from __future__ import annotations

import logging
import resource
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from ..config import Config
from ..deliver.safety import check_smtp_settings
from ..errors import DigestbotError
from ..periods import aware_utc
from ..store import Store, run_lock
from ..store.db import store_error_from
from ..tokens import Tokens
from .digests import Progress, digest_stage
from .due import Selection, select_due
from .report import RunReport, timed

log = logging.getLogger("digestbot.run")
T = TypeVar("T")


def prepare_folders(config: Config) -> None:
    """Create the folders a run writes to, or fail naming the setting before any work."""
    # the Maildir is left to its transport: it must create cur/, new/ and tmp/ itself
    names = ["ingest.inbox", "digest.feeds_dir"]
    if config["delivery.transport"] == "file":
        names.append("delivery.outdir")
    if config["store.lock_dir"]:
        names.append("store.lock_dir")
    for name in names:
        config.writable_dir(name)
    # settings that must not reach real readers stop the run before it queues anything
    check_smtp_settings(config)
    # every digest's links are signed: without a key each one would fail, alone, for the same
    # reason, and a run would report "1000 failed" instead of one clear error
    Tokens(config["web.secret_key"])


def _stage_progress(progress: Progress | None, stage: str) -> Callable[[int, int], None] | None:
    return None if progress is None else partial(progress, stage)


def fetch_stage(
    config: Config,
    report: RunReport,
    *,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Fetch the configured sources into the inbox. Nothing here stops the run: a source
    that is down is reported, and the run goes on with what the inbox holds."""
    from ..fetch import fetch_sources

    report.fetched = True
    with timed(report, "fetch"):
        try:
            result = fetch_sources(
                config, now=report.now, stop=stop, progress=_stage_progress(progress, "fetch")
            )
        except DigestbotError as exc:
            log.error("fetch failed: %s", exc)
            report.fetch_failures.append(f"{exc}" + (f" (hint: {exc.hint})" if exc.hint else ""))
            return
        except Exception as exc:  # a bug in one source must not keep the digests back
            log.exception("fetch crashed")
            report.fetch_failures.append(f"crashed: {type(exc).__name__}: {exc}")
            return
    report.fetch_written += result.written
    report.fetch_unchanged += result.unchanged
    report.fetch_empty += result.empty
    report.fetch_failures += [str(r) for r in result.failed]


def ingest_stage(
    store: Store, config: Config, report: RunReport, *, progress: Progress | None = None
) -> None:
    from ..ingest import ingest_inbox

    with timed(report, "ingest"):
        result = ingest_inbox(
            store,
            config.path("ingest.inbox"),
            now=report.now,
            progress=_stage_progress(progress, "ingest"),
            max_bytes=config["ingest.max_file_mb"] * 1024 * 1024,
        )
        if result.papers_new or result.papers_updated:
            # scoring.semantic: new papers are embedded once, here
            from ..ingest.embed import embed_if_on

            embed_if_on(store, config)
    if result.papers_new or result.papers_updated:
        store.analyze("papers", "sightings", "dumps")  # see digest_stage
    report.files += result.files
    report.papers_new += result.papers_new
    report.papers_updated += result.papers_updated
    report.ingest_failed += len(result.failed)
    for failure in result.failed:
        log.warning("ingest: %s", failure)


def send_stage(
    store: Store,
    config: Config,
    report: RunReport,
    *,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> None:
    from ..deliver import send_due

    # a replayed moment holds still while sending; a live run reads the clock as it goes
    clock = (lambda: report.now) if report.replay else None
    with timed(report, "send"):
        result = send_due(
            store, config, stop=stop, now=clock, progress=_stage_progress(progress, "send")
        )
    report.sent += result.sent
    report.retried += result.retried
    report.send_failed += result.failed
    report.bounced += result.bounced
    if result.error:
        hint = f" (hint: {result.hint})" if result.hint else ""
        report.errors.append(f"send: {result.error}{hint}")


def feeds_stage(
    store: Store,
    config: Config,
    report: RunReport,
    *,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> None:
    from ..render.feeds import write_feeds

    with timed(report, "feeds"):
        report.feeds = write_feeds(
            store,
            config,
            progress=_stage_progress(progress, "feeds"),
            failed=report.feeds_failed,
            stop=stop,
        )
    if stop is not None and stop.is_set():
        report.stopped = True


def run_once(store: Store, config: Config, **options: Any) -> RunReport:
    """The whole run (see :func:`run_stages`), its summary then kept for ``/metrics`` and
    ``log.metrics_textfile``."""
    from .metrics import record_run

    report = run_stages(store, config, **options)
    record_run(store, config, report)
    return report


def run_stages(
    store: Store,
    config: Config,
    *,
    now: datetime | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    ingest: bool = True,
    send: bool = True,
    fetch: bool = True,
) -> RunReport:
    """The whole run. Raises LockError at once if another run holds the lock.

    A stage that cannot work at all (an unreadable inbox, a misconfigured SMTP server) is
    recorded in ``report.errors`` and the stages that do not depend on it still run: a broken
    mail server must not keep new papers out of the store or digests out of the feeds.
    """
    report = RunReport(now=aware_utc(now), replay=now is not None)

    def stage(name: str, work: Callable[[], T]) -> T | None:
        """``work`` unless a stop was asked for, its failure recorded (see _guarded)."""
        return _guarded(report, name, work) if _go(report, stop, name) else None

    prepare_folders(config)
    with run_lock(store, config):
        # fetched files go through the inbox, so fetching without ingesting would only
        # pile them up for the next run
        if fetch and ingest and config["fetch.sources"] and _go(report, stop, "fetch"):
            fetch_stage(config, report, progress=progress, stop=stop)
        if ingest:
            stage("ingest", lambda: ingest_stage(store, config, report, progress=progress))
        selection = stage("select", lambda: _select(store, report))
        if selection is None:
            return report
        if selection.due:
            stage(
                "digests",
                lambda: digest_stage(
                    store, config, selection.due, report, progress=progress, stop=stop
                ),
            )
        if send:
            stage("send", lambda: send_stage(store, config, report, progress=progress, stop=stop))
        feeds_dir = config.path("digest.feeds_dir")
        # feeds change only when digests are made; write them also on the very first run
        fresh = not any(feeds_dir.iterdir())
        if report.queued or report.feed_only or fresh:
            stage("feeds", lambda: feeds_stage(store, config, report, progress=progress, stop=stop))
        if config["store.retention_days"]:
            stage("prune", lambda: prune_stage(store, config, report))
    return report


def prune_stage(store: Store, config: Config, report: RunReport) -> None:
    """History past ``store.retention_days`` goes, so the store does not grow forever."""
    from ..store.retention import prune

    with timed(report, "prune"):
        before = report.now - timedelta(days=config["store.retention_days"])
        report.pruned = prune(store, before).digests


def _select(store: Store, report: RunReport) -> Selection:
    with timed(report, "select"):
        selection = select_due(store, report.now)
    report.due = len(selection)
    report.bad_schedules = len(selection.bad_schedules)
    log.debug("due: %d subscribers", report.due)
    return selection


def _go(report: RunReport, stop: threading.Event | None, stage: str) -> bool:
    if stop is not None and stop.is_set():
        if not report.stopped:
            log.info("stopping before %s: shutdown requested", stage)
        report.stopped = True
        return False
    return True


def _guarded(report: RunReport, stage: str, work: Callable[[], T]) -> T | None:
    log.debug("%s: started", stage)
    try:
        return work()
    except (DigestbotError, SQLAlchemyError) as raised:
        # a store that is locked, full or gone: said with its fix, and the later stages try
        exc = raised if isinstance(raised, DigestbotError) else store_error_from(raised)
        log.error("%s failed: %s", stage, exc)
        report.errors.append(f"{stage}: {exc}" + (f" (hint: {exc.hint})" if exc.hint else ""))
        return None
    except Exception as exc:  # noqa: BLE001 - a bug: logged in full, and the run goes on
        log.exception("%s failed", stage)
        report.errors.append(f"{stage}: {type(exc).__name__}: {exc}")
        return None
    finally:
        if log.isEnabledFor(logging.DEBUG):
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            log.debug("%s: done; peak RSS so far %.0f MiB", stage, peak)


def send_once(
    store: Store,
    config: Config,
    *,
    now: datetime | None = None,
    stop: threading.Event | None = None,
) -> RunReport:
    """Just the send stage, under the run lock: the daemon's outbox retry job."""
    report = RunReport(now=aware_utc(now), replay=now is not None)
    prepare_folders(config)
    with run_lock(store, config):
        _guarded(report, "send", lambda: send_stage(store, config, report, stop=stop))
    return report


def ingest_once(
    store: Store, config: Config, *, now: datetime | None = None, progress: Progress | None = None
) -> RunReport:
    """Just the ingest stage, under the run lock: the daemon's frequent inbox job."""
    report = RunReport(now=aware_utc(now), replay=now is not None)
    config.writable_dir("ingest.inbox")
    with run_lock(store, config):
        ingest_stage(store, config, report, progress=progress)
    return report
