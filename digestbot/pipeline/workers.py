"""Worker processes that render and queue batches of digests (:func:`.digests.digest_batch`).

They are started with ``spawn``, never forked: the run that starts them has threads (the
scheduler's, rich's refresh, the store's), and a fork copies their locks mid-use. Each
worker opens its own store and loads what it renders from it (readers, papers) by id, so
only ids and picks go to it and only outcomes come back. A worker ignores SIGINT and SIGTERM
(`systemctl stop` signals the whole group): the run decides when to stop and lets the
batches in hand finish, each one transaction. The kernel kills a worker whose run died
(``PR_SET_PDEATHSIG``), so a run killed with SIGKILL or by the OOM killer leaves no worker
waiting on a pipe; its open transaction is rolled back by the database.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ..config import LOG_FORMAT, Config
from ..scoring.picks import Pick
from ..store import Store, Subscriber, open_store
from .report import DigestOutcome

if TYPE_CHECKING:
    from .digests import Batch

log = logging.getLogger("digestbot.run")

# per worker process: its store, the run's settings and the papers it has loaded
_worker: dict[str, Any] = {}

Spec = list[tuple[int, str, list[Pick]]]  # reader id, period, picks


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this process when its parent dies (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # it died before the request was made
        os._exit(1)


def _start(url: str, config: Config, level: int, parent: int) -> None:
    from .. import deliver, render  # noqa: F401 - loaded before the heap is frozen
    from .heap import freeze_heap

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent(parent)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format=LOG_FORMAT)
    logging.getLogger("digestbot").setLevel(level)
    # the run that started this worker opened (and migrated) the store
    _worker.update(store=open_store(url, migrate=False), config=config, papers={})
    freeze_heap()  # for the worker's life: it ends with the stage


def _ready() -> None:
    """Nothing: what a worker is started for (its initializer does the work)."""


def _digest(spec: Spec, now: datetime) -> list[DigestOutcome]:
    from .digests import digest_batch

    store: Store = _worker["store"]
    with store.session() as session:
        ids = [reader for reader, _, _ in spec]
        found = {s.id: s for s in session.scalars(select(Subscriber).where(Subscriber.id.in_(ids)))}
    gone = [DigestOutcome(r, period, "skipped") for r, period, _ in spec if r not in found]
    batch = [(found[r], period, picks) for r, period, picks in spec if r in found]
    return gone + digest_batch(store, _worker["config"], batch, now, _worker["papers"])


class DigestPool:
    """``workers`` processes, each rendering and queueing one batch at a time."""

    def __init__(self, store: Store, config: Config, workers: int) -> None:
        self.workers = workers
        self.initargs = (
            store.url,
            config,
            logging.getLogger("digestbot").getEffectiveLevel(),
            os.getpid(),
        )
        self.executor = self._executor()

    def _executor(self) -> ProcessPoolExecutor:
        executor = ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start,
            initargs=self.initargs,
        )
        # a spawning pool starts a worker only when a task finds none idle: one task each
        # starts them all now, so that their start-up overlaps the caller's own
        for _ in range(self.workers):
            executor.submit(_ready)
        return executor

    def submit(self, batch: Batch, now: datetime) -> Future[list[DigestOutcome]]:
        spec = [(sub.id, period, picks) for sub, period, picks in batch]
        try:
            return self.executor.submit(_digest, spec, now)
        except BrokenProcessPool:
            # a worker died (killed, out of memory): the batches it had fail, the rest of
            # the run goes on in new workers
            log.warning("a digest worker died; starting new ones for the rest of the run")
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = self._executor()
            return self.executor.submit(_digest, spec, now)

    @staticmethod
    def outcomes(batch: Batch, future: Future[list[DigestOutcome]]) -> list[DigestOutcome]:
        """The batch's outcomes; if its worker failed (it died, or the batch could not be
        handed to it), each of its readers failed with the reason: the others go on, and
        the next run makes what was not queued."""
        try:
            return future.result()
        except Exception as exc:  # noqa: BLE001 - recorded against this batch's readers
            log.error("a digest worker failed on a batch of %d readers", len(batch), exc_info=exc)
            error = f"worker: {type(exc).__name__}: {exc}"
            return [DigestOutcome(sub.id, period, "failed", error) for sub, period, _ in batch]

    def close(self) -> None:
        """Batches not started are dropped, those started finish; then the workers exit."""
        self.executor.shutdown(wait=True, cancel_futures=True)
