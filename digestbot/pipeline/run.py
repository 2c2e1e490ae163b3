"""The one-shot run: fetch, ingest, select who is due, score, render, queue, send, write feeds.

Each stage is a function of its own module; this one strings them together, times them and
turns their reports into one :class:`RunReport`. Stages are imported when they run, so
``digestbot config`` or ``digestbot --help`` do not pay for scikit-learn.
"""

from __future__ import annotations

import logging
import resource
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from ..config import Config
from ..deliver.safety import check_smtp_settings
from ..errors import DigestbotError
from ..periods import aware_utc
from ..scoring.picks import Pick
from ..store import RunLock, Store, Subscriber
from ..store.db import store_error_from
from ..tokens import Tokens
from .due import Due, Selection, select_due
from .report import DigestOutcome, RunReport

if TYPE_CHECKING:
    from ..render import RenderedDigest

Batch: TypeAlias = list[tuple[Subscriber, str, list[Pick]]]  # reader, period, picks
Result: TypeAlias = "RenderedDigest | None | Exception"

log = logging.getLogger("digestbot.run")
T = TypeVar("T")
# progress(stage, done, total): how a caller (the CLI) draws bars; the library never prints
Progress = Callable[[str, int, int], None]

# subscribers rendered and queued per transaction: bounds memory (rendered messages) and
# keeps each commit short, so the web front is never blocked for long
BATCH = 200
# Due subscribers are read this many at a time, so memory does not grow with their number.
SUBSCRIBER_CHUNK = 1000


def run_lock(store: Store, config: Config) -> RunLock:
    lock_dir = config["store.lock_dir"]
    return RunLock(store, lock_dir=Path(lock_dir).expanduser() if lock_dir else None)


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


@contextmanager
def _timed(report: RunReport, stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        report.timings[stage] = report.timings.get(stage, 0.0) + time.perf_counter() - started


def _stage_progress(progress: Progress | None, stage: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(stage, done, total)


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
    with _timed(report, "fetch"):
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

    with _timed(report, "ingest"):
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


def _stream_subscribers(
    store: Store, due: list[Due], keep: dict[int, Subscriber]
) -> Iterator[Subscriber]:
    """Due subscribers loaded a chunk at a time; each is also kept for rendering."""
    for start in range(0, len(due), SUBSCRIBER_CHUNK):
        ids = [d.subscriber_id for d in due[start : start + SUBSCRIBER_CHUNK]]
        with store.session() as session:
            rows = list(session.scalars(select(Subscriber).where(Subscriber.id.in_(ids))))
        for sub in sorted(rows, key=lambda s: s.id):
            keep[sub.id] = sub
            yield sub


def render_batch(store: Store, config: Config, batch: Batch, now: datetime) -> list[Result]:
    """Each reader's digest, ``None`` (nothing to send) or the exception that stopped it:
    one reader's broken digest must not stop the others."""
    from ..render import render_digest
    from ..store import Paper

    wanted = {p.paper_id for _, _, picks in batch for p in picks}
    with store.session() as session:
        papers = {p.id: p for p in session.scalars(select(Paper).where(Paper.id.in_(wanted)))}
    results: list[Result] = []
    for sub, period, picks in batch:
        entries = [(papers[p.paper_id], p) for p in picks if p.paper_id in papers]
        try:
            results.append(render_digest(sub, entries, period=period, config=config, now=now))
        except Exception as exc:  # noqa: BLE001 - recorded against this reader, logged
            results.append(exc)
    return results


def digest_stage(
    store: Store,
    config: Config,
    due: list[Due],
    report: RunReport,
    *,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Score, render and queue one digest per due subscriber, a batch at a time, in this
    process: memory holds one batch of messages, whatever the number of readers."""
    from ..scoring import score_subscribers

    period_of = {d.subscriber_id: d.period for d in due}
    subscribers: dict[int, Subscriber] = {}
    done = 0

    def flush(batch: Batch) -> None:
        nonlocal done
        _queue_batch(store, batch, render_batch(store, config, batch, report.now), report)
        done += len(batch)
        if progress is not None:
            progress("digests", done, len(due))

    with _timed(report, "digests"):
        picks_iter = score_subscribers(
            store, _stream_subscribers(store, due, subscribers), now=report.now, config=config
        )
        batch: Batch = []
        for item in picks_iter:
            sub = subscribers.pop(item.subscriber_id)
            batch.append((sub, period_of[sub.id], list(item.picks)))
            if len(batch) >= BATCH:
                flush(batch)
                batch = []
                if stop is not None and stop.is_set():
                    report.stopped = True
                    break
        if batch and not report.stopped:
            flush(batch)
        # PostgreSQL plans the sender's joins from table statistics, which nothing else
        # refreshes after a bulk write on a server without autovacuum. subscribers too:
        # this stage wrote every due reader's row, and a claim joins them; with stale
        # counts (10 active readers where there were 100,000) each claim walked every
        # reader's digests, 18 ms a claim at 10,000 readers, ten times that at 100,000
        store.analyze("digests", "digest_items", "digest_messages", "subscribers")


def _queue_batch(store: Store, batch: Batch, results: list[Result], report: RunReport) -> None:
    """Queue a rendered batch; a digest that failed to render is reported, not queued."""
    rendered: list[tuple[Subscriber, str, list[Any], Any]] = []
    for (sub, period, picks), message in zip(batch, results, strict=True):
        if isinstance(message, Exception):
            log.error(
                "rendering the digest of subscriber %d failed",
                sub.id,
                exc_info=(type(message), message, message.__traceback__),
            )
            error = f"render: {type(message).__name__}: {message}"
            report.digests.append(DigestOutcome(sub.id, period, "failed", error))
            continue
        rendered.append((sub, period, picks, message))
    try:
        report.digests.extend(_queue(store, rendered, report.now))
    except Exception:  # noqa: BLE001 - whatever it was, it is one digest's: find which
        # one bad row spoils the transaction: redo the batch one subscriber at a time
        log.warning("queueing a batch failed; retrying its %d digests one by one", len(rendered))
        for one in rendered:
            try:
                report.digests.extend(_queue(store, [one], report.now))
            except Exception as exc:  # noqa: BLE001 - recorded against this reader
                sub, period = one[0], one[1]
                log.exception("queueing the digest of subscriber %d failed", sub.id)
                error = f"queue: {type(exc).__name__}: {exc}"
                report.digests.append(DigestOutcome(sub.id, period, "failed", error))


def _queue(
    store: Store, rendered: Iterable[tuple[Subscriber, str, list[Any], Any]], now: datetime
) -> list[DigestOutcome]:
    """Queue digests and mark their periods done, in one transaction."""
    from ..deliver import Outgoing, enqueue_many

    rendered = list(rendered)
    with store.session() as session:
        ids = [sub.id for sub, *_ in rendered]
        if store.is_sqlite:
            # take the write lock before reading, so the re-check below and the writes are one
            # serialised transaction: an unsubscribe committed meanwhile is seen, or waits
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        # PostgreSQL: the subscriber rows stay locked until the digests are queued
        current = {
            s.id: s
            for s in session.scalars(
                select(Subscriber)
                .where(Subscriber.id.in_(ids))
                .order_by(Subscriber.id)
                .with_for_update()
            )
        }
        outgoing: list[Outgoing] = []
        # an outcome per digest in batch order; a queued one is known after enqueue_many
        outcomes: list[DigestOutcome | Outgoing] = []
        for detached, period, picks, message in rendered:
            sub = current.get(detached.id)
            # re-checked inside the transaction: the reader may have unsubscribed meanwhile
            if sub is None or sub.status != "active" or sub.last_period == period:
                outcomes.append(DigestOutcome(detached.id, period, "skipped"))
                continue
            if message is None:
                outcomes.append(DigestOutcome(sub.id, period, "empty"))
            else:
                feed_only = sub.formats == "rss"
                out = Outgoing(
                    subscriber=sub,
                    period=period,
                    # a feed is built from the digest's papers: no message is stored
                    message=None if feed_only else message.as_bytes(),
                    message_id=message.message_id,
                    subject=message.subject,
                    picks=picks,
                    state="feed_only" if feed_only else "queued",
                )
                outgoing.append(out)
                outcomes.append(out)
                sub.last_digest_at = now
            sub.last_period = period
        # the whole batch in three statements, not three per digest
        created = dict(zip(map(id, outgoing), enqueue_many(session, outgoing), strict=True))
    return [
        o
        if isinstance(o, DigestOutcome)
        else DigestOutcome(
            o.subscriber.id, o.period, o.state if created[id(o)] is not None else "exists"
        )
        for o in outcomes
    ]


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
    with _timed(report, "send"):
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

    with _timed(report, "feeds"):
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
    lock: bool = True,
    fetch: bool = True,
) -> RunReport:
    """The whole run. Raises LockError at once if another run holds the lock.

    A stage that cannot work at all (an unreadable inbox, a misconfigured SMTP server) is
    recorded in ``report.errors`` and the stages that do not depend on it still run: a broken
    mail server must not keep new papers out of the store or digests out of the feeds.
    """
    report = RunReport(now=aware_utc(now), replay=now is not None)
    prepare_folders(config)
    with run_lock(store, config) if lock else nullcontext():
        # fetched files go through the inbox, so fetching without ingesting would only
        # pile them up for the next run
        if fetch and ingest and config["fetch.sources"] and _go(report, stop, "fetch"):
            fetch_stage(config, report, progress=progress, stop=stop)
        if ingest and _go(report, stop, "ingest"):
            _guarded(
                report, "ingest", lambda: ingest_stage(store, config, report, progress=progress)
            )
        if not _go(report, stop, "select"):
            return report
        selection = _guarded(report, "select", lambda: _select(store, report))
        if selection is None:
            return report
        if selection.due and _go(report, stop, "digests"):
            _guarded(
                report,
                "digests",
                lambda: digest_stage(
                    store, config, selection.due, report, progress=progress, stop=stop
                ),
            )
        if send and _go(report, stop, "send"):
            _guarded(
                report,
                "send",
                lambda: send_stage(store, config, report, progress=progress, stop=stop),
            )
        feeds_dir = config.path("digest.feeds_dir")
        # feeds change only when digests are made; write them also on the very first run
        fresh = not any(feeds_dir.iterdir())
        if (report.queued or report.feed_only or fresh) and _go(report, stop, "feeds"):
            _guarded(
                report,
                "feeds",
                lambda: feeds_stage(store, config, report, progress=progress, stop=stop),
            )
        if config["store.retention_days"] and _go(report, stop, "prune"):
            _guarded(report, "prune", lambda: prune_stage(store, config, report))
    return report


def prune_stage(store: Store, config: Config, report: RunReport) -> None:
    """History past ``store.retention_days`` goes, so the store does not grow forever."""
    from ..store.retention import prune

    with _timed(report, "prune"):
        before = report.now - timedelta(days=config["store.retention_days"])
        report.pruned = prune(store, before).digests


def _select(store: Store, report: RunReport) -> Selection:
    with _timed(report, "select"):
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
