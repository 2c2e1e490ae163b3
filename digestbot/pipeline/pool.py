"""Rendering a run's digests in worker processes, one per core.

Rendering is the digest stage's busiest part (about half a millisecond per reader, on
one core); scoring and queueing are not. The workers are forked once per stage and keep
their per-paper caches for the whole run. Each gets a batch of picks (reader ids, periods,
scores: a few kilobytes), loads the readers and any paper it has not seen from the store
through its own connection, and sends the messages back through the render spool (see
``render/many.py``). The run's own process meanwhile queues the batches already rendered.

Runs too small to repay starting the workers render in the run's own process.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from ..config import Config
from ..render.many import Result, Span, pack_span, prepare_templates, render_job, spool, unpack_span
from ..scoring.picks import Pick
from ..store import Paper, Store, Subscriber, open_store

log = logging.getLogger("digestbot.run")
Batch = list[tuple[Subscriber, str, list[Pick]]]  # reader, period, picks
SPAN = 50  # readers per task: small, so the workers' last tasks finish close together
POOL_MIN = 1000  # due readers below which the workers would cost more than they save
ORPHAN_CHECK_SECONDS = 0.5


def processes_for(config: Config, due: int) -> int:
    """How many worker processes render a run with ``due`` readers (1: none)."""
    wanted = config["digest.render_processes"] or _cores()
    if wanted <= 1 or due < POOL_MIN or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return wanted


def _cores() -> int:
    # the cores this process may run on (a container's share), not all the host's
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS: no affinity
        return os.cpu_count() or 1


def render_batch(store: Store, config: Config, batch: Batch, now: datetime) -> list[Result]:
    """Render a batch in this process: for each reader, the digest, ``None`` or the error."""
    wanted = {p.paper_id for _, _, picks in batch for p in picks}
    with store.session() as session:
        papers = {p.id: p for p in session.scalars(select(Paper).where(Paper.id.in_(wanted)))}
    return [_render(sub, period, picks, papers, config, now) for sub, period, picks in batch]


def _render(
    sub: Subscriber,
    period: str,
    picks: Sequence[Pick],
    papers: dict[str, Paper],
    config: Config,
    now: datetime,
) -> Result:
    entries = [(papers[p.paper_id], p) for p in picks if p.paper_id in papers]
    return render_job((sub, entries, period), config, now)


@dataclass
class _Worker:
    store: Store
    config: Config
    now: datetime
    folder: str
    papers: dict[str, Paper] = field(default_factory=dict)


_WORKER: _Worker | None = None


def _start(store: Store, config: Config, now: datetime, folder: str) -> None:
    global _WORKER
    # the parent's pooled connections are the parent's: drop them unclosed (closing would
    # end the parent's sessions) and open this worker's own
    store.engine.dispose(close=False)
    _WORKER = _Worker(open_store(store.url, migrate=False), config, now, folder)
    threading.Thread(target=_exit_with, args=(os.getppid(),), daemon=True).start()


def _exit_with(parent: int) -> None:
    """End this worker when the run that forked it is gone. A pool's workers outlive a
    parent killed outright (SIGKILL, the OOM killer), waiting for work forever with a
    database connection open."""
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_SECONDS)
    os._exit(1)


def _render_span(name: str, jobs: list[tuple[int, str, list[Pick]]]) -> Span:
    worker = _WORKER
    assert worker is not None, "the pool's initializer opens the worker's store"
    ids = [sub_id for sub_id, _, _ in jobs]
    missing = {p.paper_id for _, _, picks in jobs for p in picks} - worker.papers.keys()
    with worker.store.session() as session:
        readers = {
            s.id: s for s in session.scalars(select(Subscriber).where(Subscriber.id.in_(ids)))
        }
        if missing:
            query = select(Paper).where(Paper.id.in_(missing))
            worker.papers.update((p.id, p) for p in session.scalars(query))
    results: list[Result] = []
    for sub_id, period, picks in jobs:
        sub = readers.get(sub_id)
        # a reader deleted since scoring: queueing finds them gone and skips them
        results.append(
            None
            if sub is None
            else _render(sub, period, picks, worker.papers, worker.config, worker.now)
        )
    return pack_span(results, worker.folder, name)


class RenderPool:
    """Worker processes rendering batches while the caller queues the ones before.

    ``submit`` hands a batch to the workers and returns at once; ``results`` waits for it.
    If a worker dies, the pool is given up and its batches are rendered in this process.
    """

    def __init__(self, store: Store, config: Config, now: datetime, processes: int) -> None:
        self.store, self.config, self.now = store, config, now
        self._stack = ExitStack()
        self._pool: ProcessPoolExecutor | None = None
        try:
            folder = self._stack.enter_context(spool())
            prepare_templates()
            # frozen, the objects the workers inherit are not walked by their garbage
            # collector, which would copy every page it touches
            gc.freeze()
            self._stack.callback(gc.unfreeze)
            self._pool = ProcessPoolExecutor(
                processes,
                mp_context=multiprocessing.get_context("fork"),
                initializer=_start,
                initargs=(store, config, now, folder),
            )
            self._stack.callback(self._shutdown)
        except BaseException:
            self._stack.close()
            raise
        self._spans = 0

    def submit(self, batch: Batch) -> list[Future[Span]] | None:
        if self._pool is None:
            return None
        jobs = [(sub.id, period, picks) for sub, period, picks in batch]
        futures = []
        try:
            for start in range(0, len(jobs), SPAN):
                self._spans += 1
                span = jobs[start : start + SPAN]
                futures.append(self._pool.submit(_render_span, f"{self._spans}.msgs", span))
        except BrokenProcessPool as exc:  # a worker died since the last batch
            self._give_up(exc)
            return None
        return futures

    def results(self, batch: Batch, futures: list[Future[Span]] | None) -> list[Result]:
        if futures is not None:
            try:
                return [r for f in futures for r in unpack_span(f.result())]
            except Exception as exc:  # BrokenProcessPool: a worker was killed, or crashed
                self._give_up(exc)
        return render_batch(self.store, self.config, batch, self.now)

    def _give_up(self, exc: Exception) -> None:
        if self._pool is not None:
            log.warning("render workers failed (%s); rendering in this process", exc)
        self._shutdown()

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> RenderPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
