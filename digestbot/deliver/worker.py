"""`send --worker`: one of several senders sharing a store, on one host or many.

A worker sends batch after batch until nothing is due. Before it leaves, it waits while other
workers still hold claims: if one of them died, its claims come back when its lease runs out
(at once when it ran on this host), and this worker sends them.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select

from ..config import Config
from ..store import Digest, Store
from . import outbox
from .sender import SendReport, send_due


def foreign_claims(store: Store, worker_id: str) -> int:
    with store.session() as s:
        n = s.scalar(
            select(func.count())
            .select_from(Digest)
            .where(Digest.state == "sending", Digest.claimed_by != worker_id)
        )
    return int(n or 0)


def run_worker(store: Store, config: Config, *, stop: threading.Event) -> SendReport:
    worker_id = outbox.new_worker_id()
    total = SendReport(worker_id=worker_id, transport=config["delivery.transport"])
    started = time.perf_counter()
    while not stop.is_set():
        report = send_due(store, config, worker_id=worker_id, stop=stop)
        total.add(report)
        total.released += report.released
        total.due += report.due
        total.connections += report.connections
        total.error, total.limited = report.error, report.limited
        if report.error or report.limited:
            break
        if report.due:
            continue
        if not foreign_claims(store, worker_id):
            break
        stop.wait(1.0)  # for the other workers' claims to be sent or come back
    total.stopped = stop.is_set()
    total.elapsed = time.perf_counter() - started
    return total
