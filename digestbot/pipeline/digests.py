"""The digest stage: score every due reader, render their digest and queue it, a batch at a
time, so that memory holds one batch of messages whatever the number of readers.

Scoring runs here, for all readers of a chunk at once. Rendering and queueing a batch is one
unit of work (:func:`digest_batch`): in this process for a small run, or on every core for a
large one, in worker processes started with ``spawn`` (see :mod:`.workers`) while this
process scores the next readers. Either way the same function does it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import ExitStack
from datetime import datetime
from typing import Any, TypeAlias

from sqlalchemy import select, update

from ..config import Config
from ..scoring.picks import Pick
from ..store import Paper, Store, Subscriber
from .due import Due
from .report import DigestOutcome, RunReport, timed

Batch: TypeAlias = list[tuple[Subscriber, str, list[Pick]]]  # reader, period, picks
# progress(stage, done, total): how a caller (the CLI) draws bars; the library never prints
Progress = Callable[[str, int, int], None]

log = logging.getLogger("digestbot.run")

# subscribers rendered and queued per transaction: bounds memory (rendered messages) and
# keeps each commit short, so the web front is never blocked for long
BATCH = 200
# Due subscribers are read this many at a time, so memory does not grow with their number.
SUBSCRIBER_CHUNK = 1000
# below this many due readers, starting worker processes costs more than it saves
POOL_MIN_READERS = 2000


def digest_batch(
    store: Store, config: Config, batch: Batch, now: datetime, papers: dict[str, Paper]
) -> list[DigestOutcome]:
    """Render and queue one batch: an outcome per reader, in batch order. A digest that
    fails to render is reported, not queued: one reader's broken digest must not stop the
    others. ``papers``: those the run has loaded, by id, each loaded from the store once
    (every batch of readers picks among the same few hundred new papers)."""
    from ..render import render_digest

    missing = {p.paper_id for _, _, picks in batch for p in picks} - papers.keys()
    if missing:
        with store.session() as session:
            for paper in session.scalars(select(Paper).where(Paper.id.in_(missing))):
                papers[paper.id] = paper
    outcomes: list[DigestOutcome] = []
    rendered: list[tuple[Subscriber, str, list[Any], Any]] = []
    for sub, period, picks in batch:
        entries = [(papers[p.paper_id], p) for p in picks if p.paper_id in papers]
        try:
            message = render_digest(sub, entries, period=period, config=config, now=now)
        except Exception as exc:  # noqa: BLE001 - recorded against this reader, logged
            log.exception("rendering the digest of subscriber %d failed", sub.id)
            error = f"render: {type(exc).__name__}: {exc}"
            outcomes.append(DigestOutcome(sub.id, period, "failed", error))
            continue
        rendered.append((sub, period, picks, message))
    try:
        outcomes.extend(_queue(store, rendered, now))
    except Exception:  # noqa: BLE001 - whatever it was, it is one digest's: find which
        # one bad row spoils the transaction: redo the batch one subscriber at a time
        log.warning("queueing a batch failed; retrying its %d digests one by one", len(rendered))
        for one in rendered:
            try:
                outcomes.extend(_queue(store, [one], now))
            except Exception as exc:  # noqa: BLE001 - recorded against this reader
                sub, period = one[0], one[1]
                log.exception("queueing the digest of subscriber %d failed", sub.id)
                error = f"queue: {type(exc).__name__}: {exc}"
                outcomes.append(DigestOutcome(sub.id, period, "failed", error))
    return outcomes


def _queue(
    store: Store, rendered: Sequence[tuple[Subscriber, str, list[Any], Any]], now: datetime
) -> list[DigestOutcome]:
    """Queue digests and mark their periods done, in one transaction."""
    from ..deliver import Outgoing, enqueue_many

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
        # each reader's period done in this batch, and whether a digest was made for it
        done: dict[int, tuple[str, bool]] = {}
        for detached, period, picks, message in rendered:
            sub = current.get(detached.id)
            # re-checked inside the transaction: the reader may have unsubscribed meanwhile
            last, made = done.get(detached.id, (None, False))
            if sub is None or sub.status != "active" or period in (sub.last_period, last):
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
            done[sub.id] = (period, made or message is not None)
        # the whole batch in a few statements, not three per digest: one UPDATE of the
        # readers per period (a row each cost a round trip and the ORM's bookkeeping)
        groups: dict[tuple[str, bool], list[int]] = {}
        for reader, key in done.items():
            groups.setdefault(key, []).append(reader)
        for (period, made), readers in groups.items():
            values: dict[str, Any] = {"last_period": period}
            if made:
                values["last_digest_at"] = now
            session.execute(
                update(Subscriber)
                .where(Subscriber.id.in_(readers))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        created = dict(zip(map(id, outgoing), enqueue_many(session, outgoing), strict=True))
    return [
        o
        if isinstance(o, DigestOutcome)
        else DigestOutcome(
            o.subscriber.id, o.period, o.state if created[id(o)] is not None else "exists"
        )
        for o in outcomes
    ]


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


def digest_stage(
    store: Store,
    config: Config,
    due: list[Due],
    report: RunReport,
    *,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Score, render and queue one digest per due subscriber, a batch at a time; with
    workers, batches are rendered and queued on every core while the next are scored."""
    from .heap import freeze_heap
    from .workers import DigestPool

    period_of = {d.subscriber_id: d.period for d in due}
    subscribers: dict[int, Subscriber] = {}
    papers: dict[str, Paper] = {}
    done = 0
    wanted = config["digest.workers"] or (os.cpu_count() or 1)
    # worker processes; 0 renders in this process
    workers = wanted if wanted > 1 and len(due) >= POOL_MIN_READERS else 0
    pool: DigestPool | None = None
    # batches handed to the workers, oldest first; a few per worker keep them all busy
    # while bounding what waits in memory
    waiting: deque[tuple[Batch, Future[list[DigestOutcome]]]] = deque()

    def finished(batch: Batch, outcomes: list[DigestOutcome]) -> None:
        nonlocal done
        report.digests.extend(outcomes)
        done += len(batch)
        if progress is not None:
            progress("digests", done, len(due))

    def collect(limit: int) -> None:
        while len(waiting) > limit:
            batch, future = waiting.popleft()
            finished(batch, DigestPool.outcomes(batch, future))

    def flush(batch: Batch) -> None:
        if pool is None:
            finished(batch, digest_batch(store, config, batch, report.now, papers))
            return
        waiting.append((batch, pool.submit(batch, report.now)))
        collect(2 * workers)

    with timed(report, "digests"):
        with ExitStack() as stack:
            if workers:
                # started first: their start-up (a second of imports each) runs while this
                # process loads scikit-learn and builds the model, not after
                pool = DigestPool(store, config, workers)
                stack.callback(pool.close)
                log.info("digests: rendering and queueing in %d worker processes", workers)
            from ..scoring import score_subscribers

            stack.callback(freeze_heap())  # scikit-learn's modules frozen with the rest
            picks_iter = score_subscribers(
                store, _stream_subscribers(store, due, subscribers), now=report.now, config=config
            )
            # a stop (SIGTERM) ends the scoring threads at once, not when the stage returns
            stack.callback(picks_iter.close)
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
            collect(0)
        # PostgreSQL plans the sender's joins from table statistics, which nothing else
        # refreshes after a bulk write on a server without autovacuum. subscribers too:
        # this stage wrote every due reader's row, and a claim joins them; with stale
        # counts (10 active readers where there were 100,000) each claim walked every
        # reader's digests, 18 ms a claim at 10,000 readers, ten times that at 100,000
        store.analyze("digests", "digest_items", "digest_messages", "subscribers")
