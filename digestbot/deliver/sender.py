"""The sender: claim due digests in batches, send them over a pool of channels, and record
the results with a group commit.

Crash safety rests on three rules:

* a row is claimed (``sending``, with a lease) in its own committed transaction before any of
  it is sent, so another process never picks it up while this one lives;
* a row is marked ``sent`` only after the server accepted it;
* a channel does not hand over its next message until the result of its previous one is
  committed. Results of all channels that finish meanwhile share one transaction (a group
  commit), so there is no disk sync per message, yet at any moment at most one message per
  channel (the pool size) can be accepted by the server and not yet recorded: the only
  messages a crash can send twice. Over SMTP the channel announces its next message (MAIL
  FROM, RCPT TO, DATA) while that commit runs, so three of a message's four round trips
  overlap it; nothing is accepted before the message's end, and a message announced when
  the run is told to stop is withdrawn (RSET, or a closed connection inside DATA) and goes
  back to the queue.

A commit costs about a millisecond whatever its size, so the committer lingers a little
(:data:`GROUP_LINGER`) for the results of messages still in flight, and commits at once when
no other message is in flight: larger groups, fewer commits, the same guarantees.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from functools import partial
from typing import Any, TypeVar

from .. import clock
from ..config import Config
from ..errors import DeliveryError, DigestbotError, StoreError
from ..store import Store
from ..store.db import store_error_from
from . import outbox
from .outbox import Job, Outcome, Tally
from .ratelimit import RateLimiter
from .transports import (
    FileTransport,
    SendFailure,
    SplitChannel,
    TimedOut,
    Transport,
    Unavailable,
    make_transport,
)
from .verp import Verp

try:  # not on Windows
    import uvloop
except ImportError:  # pragma: no cover - the plain asyncio loop does the same, a little slower
    uvloop = None  # type: ignore[assignment]

log = logging.getLogger(__name__)


class NotAdmitted(Exception):
    """A channel's first connection refused while other channels deliver."""


T = TypeVar("T")
Progress = Callable[[int, int], None]
Group = list[tuple[Job, Outcome, asyncio.Future[None]]]  # results and their commits' futures

# How long the first result of a group may wait for the results of other messages in flight
# before it is committed (a group is committed at once when none is left in flight). It
# delays only the hand-over of a channel's next message, whose envelope goes out meanwhile.
# Fewer, larger commits save CPU and, as each commit keeps the store's thread busy, waiting
# too: in bench/send.py (16 connections) 2 ms made groups of about 5 messages, 5 ms groups
# of 8 to 13 and a fifth less sender CPU per message; 3 ms waited longer than 5 ms.
GROUP_LINGER = 0.005


@dataclass
class SendReport(Tally):
    """A Tally of the whole run, and how the run went."""

    released: int = 0
    elapsed: float = 0.0
    due: int = 0
    dry_run: bool = False
    limited: bool = False  # stopped by smtp.daily_limit
    stopped: bool = False  # asked to stop (SIGTERM)
    error: str | None = None  # why the run ended early (server unreachable)
    hint: str | None = None  # what to do about it, when more than "run again later"
    transport: str = ""
    worker_id: str = ""
    connections: int = 0
    not_admitted: int = 0  # connections the relay refused while others delivered

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def done(self) -> int:
        return self.sent + self.retried + self.failed + self.bounced

    @property
    def ok(self) -> bool:
        return not (self.retried or self.failed or self.bounced or self.error)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rate": round(self.rate, 1), "elapsed": round(self.elapsed, 3)}


class _Run:
    """One call of send_due: the dispatcher, the channel tasks and the group committer."""

    def __init__(
        self,
        store: Store,
        config: Config,
        transport: Transport,
        report: SendReport,
        *,
        limit: int | None,
        progress: Progress | None,
        stop: threading.Event,
        now: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.config = config
        self.transport = transport
        self.report = report
        self.limit = limit
        self.worker_id = report.worker_id
        self.progress = progress
        self.stop = stop
        self.now = now
        self.verp = Verp.from_config(config)  # an envelope sender per digest
        self.batch = config["delivery.batch_size"]
        # the next claim is made while a batch's worth is still in hand: a claim (on
        # PostgreSQL tens of ms for 100 messages of 50 KB) then never leaves connections idle
        self.refill_below = max(self.batch, 1)
        # a hanging server: this many timeouts in a row pause sending for the run
        self.max_timeouts = config["smtp.max_timeouts"]
        self.timeouts = 0
        # a relay that refuses everyone: the same 5xx for this many recipients in a row
        self.max_refusals = config["smtp.max_refusals"]
        self.refusal = ""  # the reply of the current run of refusals
        self.refused: list[int] = []  # their digests, given back if the run of them is systemic
        self.systemic: DeliveryError | None = None
        seconds = config["delivery.deadline_seconds"]
        self.deadline = time.monotonic() + seconds if seconds else None
        self.lease = timedelta(seconds=config["delivery.lease_seconds"])
        self.record = partial(
            outbox.record,
            store,
            max_attempts=config["delivery.max_attempts"],
            backoff_seconds=config["delivery.backoff_seconds"],
        )
        self.daily_limit = config["smtp.daily_limit"] if transport.name == "smtp" else 0
        rate = config["smtp.rate"] if transport.name == "smtp" else 0.0
        self.limiter = RateLimiter(rate)
        if rate > 0:
            # what waits in pending must go out well within its lease at this rate
            fits = int(rate * self.lease.total_seconds() / 2)
            self.batch = max(1, min(self.batch, fits))
        self.pending: deque[Job] = deque()
        # ids claimed and not yet recorded or given back: their leases are renewed
        self.held: set[int] = set()
        # ids whose result could not be committed: sent (maybe), so never released
        self.unrecorded: set[int] = set()
        # and those results, recorded again at the end of the run if the store is back
        self.lost_results: list[tuple[Job, Outcome]] = []
        self.renewed = time.monotonic()
        self.claimed = 0
        self.cursor = outbox.QueueCursor()
        self.exhausted = False
        self.halt = False
        self.fill_lock = asyncio.Lock()
        self.prefetch: asyncio.Task[None] | None = None
        self.results: Group = []
        self.committing = False  # a group's commit runs on the store's thread
        self.loop: asyncio.AbstractEventLoop  # set by run()
        self.in_flight = 0  # messages handed to a channel whose result is not yet in results
        # channels whose first connection is not settled yet, and those let in
        self.trying = transport.concurrency
        self.admitted = 0
        self.first_settled = asyncio.Condition()
        self.linger: asyncio.TimerHandle | None = None
        self.closing = False
        # one thread for the store: SQLite connections stay on it, and the event loop that
        # drives the connections never waits on a disk sync
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="digestbot-outbox")
        # PostgreSQL: claims on a thread (and connection) of their own, so that a claim and
        # a group commit, which touch different rows, run at once; a claim behind the
        # commits on one thread held them up (half of a PostgreSQL send was the store's
        # thread). SQLite's one write lock would serialise them anyway: one thread.
        self.claim_executor = (
            ThreadPoolExecutor(1, thread_name_prefix="digestbot-claims")
            if store.dialect == "postgresql"
            else self.executor
        )

    async def db(
        self, fn: Callable[..., T], *args: Any, executor: Executor | None = None, **kwargs: Any
    ) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor or self.executor, partial(fn, *args, **kwargs))

    # --- dispatching ---

    async def next_job(self) -> Job | None:
        while True:
            if self.halt or self.stop.is_set():
                return None
            if self.deadline is not None and time.monotonic() > self.deadline:
                self.halt = True
                self.report.error = (
                    f"delivery.deadline_seconds ({self.config['delivery.deadline_seconds']} s) "
                    "reached: the rest stays queued for the next run"
                )
                return None
            if self.pending:
                if time.monotonic() - self.renewed > self.lease.total_seconds() / 3:
                    await self.renew()
                    continue
                job = self.pending.popleft()
                if (
                    len(self.pending) < self.refill_below
                    and not self.exhausted
                    and (self.prefetch is None or self.prefetch.done())
                ):
                    self.prefetch = asyncio.create_task(self.fill())
                return job
            if self.exhausted:
                return None
            await self.fill()

    async def fill(self) -> None:
        async with self.fill_lock:
            if self.pending and len(self.pending) >= self.refill_below:
                return
            if self.exhausted or self.halt or self.stop.is_set():
                return
            n = self.batch
            if self.limit is not None:
                n = min(n, self.limit - self.claimed)
            if n <= 0:
                self.exhausted = True
                return
            try:
                jobs = await self.db(
                    outbox.claim,
                    self.store,
                    self.worker_id,
                    n,
                    self.now(),
                    self.lease,
                    max_attempts=self.config["delivery.max_attempts"],
                    daily_limit=self.daily_limit,
                    cursor=self.cursor,
                    executor=self.claim_executor,
                )
            except Exception as exc:  # locked, full, gone: nothing was claimed, all stays queued
                failure = store_error_from(exc, "cannot claim digests to send")
                log.error("%s", failure)
                self.halt = self.exhausted = True
                self.report.error, self.report.hint = failure.message, failure.hint
                return
            if not jobs:
                if self.daily_limit:
                    # the claim takes no more than the headroom: none left, or none due?
                    headroom = await self.db(
                        outbox.daily_headroom, self.store, self.now(), self.daily_limit
                    )
                    self.report.limited = headroom <= 0
                self.exhausted = True
                return
            self.claimed += len(jobs)
            if not self.held:
                self.renewed = time.monotonic()
            self.held.update(j.id for j in jobs)
            self.pending.extend(jobs)

    async def renew(self) -> None:
        """Extend the leases of the claims still held; drop the ones taken over meanwhile."""
        self.renewed = time.monotonic()
        held = set(self.held)
        kept = await self.db(outbox.renew, self.store, self.worker_id, held, self.now(), self.lease)
        # a group committed meanwhile (the store's thread runs it before the renewal) is no
        # longer 'sending', so not renewed, and not held either: only claims still held
        # and not renewed were taken over
        lost = (held - kept) & self.held
        if lost:
            log.warning("%d claims were taken over by another sender; not sending them", len(lost))
            self.held -= lost
            self.report.lost += sum(1 for j in self.pending if j.id in lost)
            self.pending = deque(j for j in self.pending if j.id not in lost)

    async def renewer(self) -> None:
        """Renew the leases every third of a lease while this run holds claims."""
        period = self.lease.total_seconds() / 3
        while not self.closing:
            await asyncio.sleep(max(0.05, period - (time.monotonic() - self.renewed)))
            if not self.closing and self.held and time.monotonic() - self.renewed >= period:
                try:
                    await self.renew()
                except Exception:  # the next result commit reports a broken store
                    log.exception("renewing the outbox leases failed")

    # --- sending ---

    async def channel_task(self) -> None:
        async with self.transport.channel() as channel:
            # a split channel sends the envelope while the previous result is committed
            split = channel if isinstance(channel, SplitChannel) else None
            committed: asyncio.Future[None] | None = None  # the previous message's result
            first = split is not None  # its first connection is still to be made
            job: Job | None = None
            try:
                while (job := await self.next_job()) is not None:
                    await self.limiter.acquire()
                    outcome: Outcome | None = None
                    sender = self.verp.address(job.id, job.message_id)
                    if split is not None:
                        # the envelope goes out while the previous result is being committed
                        try:
                            outcome = await self.attempt(
                                split.envelope(sender, job.recipient), first=first
                            )
                        finally:
                            first = False
                    if committed is not None:
                        await committed
                        committed = None
                    if outcome is None and split is not None and (self.halt or self.stop.is_set()):
                        # told to stop meanwhile: this one was not sent, it goes back
                        await split.abandon()
                        break
                    if outcome is None:
                        self.in_flight += 1
                        if split is not None:
                            step = split.content(job.message)
                        else:
                            step = channel.send(sender, job.recipient, job.message, job.message_id)
                        try:
                            outcome = await self.attempt(step) or Outcome("sent")
                        finally:
                            self.in_flight -= 1
                        if outcome.kind == "sent":  # the server answers: no hang in a row
                            self.timeouts = 0
                    self.note_refusal(job, outcome)
                    committed = self.submit(job, outcome)
            except NotAdmitted as refused:
                # nothing of it left: the claim goes to a channel that was admitted
                assert job is not None
                self.pending.appendleft(job)
                self.report.not_admitted += 1
                log.warning(
                    "the relay refused one more connection (%s) with %d let in: going on "
                    "with fewer; set smtp.pool_size to what it admits",
                    refused,
                    self.admitted,
                )
            finally:
                if first:  # it never tried: refused channels need not wait for it
                    await self.first_connection(admitted=False, wait=False)
                if committed is not None:
                    # leave only once the last result is committed (or known not to be)
                    await asyncio.gather(committed, return_exceptions=True)
            self.report.connections += getattr(channel, "opened", 0)

    async def record_again(self) -> None:
        """Results the store refused (locked, full, gone): the store may be back (a lock let
        go), and the results are known, so record them rather than leave their rows
        claimed, to be sent again when the lease runs out."""
        for _ in range(3):  # each try waits up to the store's busy timeout for a lock
            try:
                tally = await self.db(self.record, self.lost_results, self.now())
            except Exception as exc:
                log.error("recording delivery results failed again: %s", exc)
            else:
                self.report.add(tally)
                ids = {job.id for job, _ in self.lost_results}
                self.held -= ids
                self.unrecorded -= ids
                return

    def note_refusal(self, job: Job, outcome: Outcome) -> None:
        """Count refusals with the same permanent reply in a row; at smtp.max_refusals it
        is the relay refusing everyone (a settings problem), not these readers: stop."""
        reply = " ".join((outcome.error or "").split()[:2]) if outcome.kind == "failed" else ""
        if not reply.startswith("5"):
            self.refusal, self.refused = "", []
            return
        if reply != self.refusal:
            self.refusal, self.refused = reply, []
        self.refused.append(job.id)
        if len(self.refused) >= self.max_refusals and self.systemic is None:
            self.halt = True
            where = f"{self.config['smtp.host']}:{self.config['smtp.port']}"
            self.systemic = DeliveryError(
                f"{where} refused {len(self.refused)} recipients in a row with the same "
                f"reply ({outcome.error}): it refuses everyone, so the settings are wrong, "
                "not the readers' addresses",
                field="smtp.host",
                hint="Check that this relay accepts mail from this host and login "
                "(smtp.host, smtp.username, delivery.envelope_from). Those digests and the "
                "rest stay queued; run `digestbot send` once it is fixed.",
            )

    async def attempt(self, step: Awaitable[None], *, first: bool = False) -> Outcome | None:
        """Run a step of sending a message: None when it went through, else the outcome.

        ``first``: the step opens a channel's first connection. Refused while another
        channel was let in, it is a relay that admits fewer connections than
        smtp.pool_size (Exchange Online takes 3 from one sender): :class:`NotAdmitted`, the
        channel retires and the others go on. Refused with every other channel, the
        relay is down."""
        try:
            await step
        except Unavailable as failure:
            if first and await self.first_connection(admitted=False):
                raise NotAdmitted(failure.reason) from None
            # the server is down: this one retries later, the rest stay queued
            self.halt = True
            self.report.error = failure.reason
            return Outcome("retry", failure.reason)
        except TimedOut as failure:
            self.timeouts += 1
            if self.timeouts >= self.max_timeouts and not self.halt:
                self.halt = True
                self.report.error = (
                    f"{self.timeouts} messages in a row timed out (smtp.timeout "
                    f"{self.config['smtp.timeout']:g} s): the server hangs, so sending stops "
                    "here and the rest stays queued for the next run"
                )
            return Outcome(failure.kind, failure.reason)
        except SendFailure as failure:
            self.timeouts = 0
            return Outcome(failure.kind, failure.reason)
        except DigestbotError:  # a setting is wrong: the same for every message
            self.halt = True
            raise
        except Exception as exc:
            # about this message alone (a transport's bug, an encoding): it fails, the run goes on
            log.exception("sending one message failed")
            return Outcome("failed", f"{type(exc).__name__}: {exc}".strip())
        except BaseException:
            self.halt = True
            raise
        if first:
            await self.first_connection(admitted=True)
        return None

    async def first_connection(self, *, admitted: bool, wait: bool = True) -> bool:
        """Note how a channel's first connection went (or that it will make none); for a
        refused one, wait until another channel is let in (True) or none was (False)."""
        async with self.first_settled:
            self.trying -= 1
            self.admitted += admitted
            self.first_settled.notify_all()
            if wait and not admitted:
                await self.first_settled.wait_for(
                    lambda: self.admitted > 0 or self.trying == 0 or self.halt
                )
            return self.admitted > 0

    # --- the group commit ---

    def submit(self, job: Job, outcome: Outcome) -> asyncio.Future[None]:
        """Hand a result to the group commit; the future is done once it is committed."""
        future: asyncio.Future[None] = self.loop.create_future()
        self.results.append((job, outcome, future))
        if not self.in_flight:
            # nothing else is on its way: waiting longer would only delay this group
            self.flush()
        elif self.linger is None:
            self.linger = self.loop.call_later(GROUP_LINGER, self.flush)
        return future

    def flush(self) -> None:
        """Commit the results waiting, unless a commit runs: its end flushes them then.

        Callbacks rather than a committer task: on a busy loop each task wake-up costs an
        iteration of it (about a millisecond), and a result's commit took three of them.
        """
        if self.linger is not None:
            self.linger.cancel()
            self.linger = None
        if self.committing or not self.results:
            return
        group, self.results = self.results, []
        self.committing = True
        self.executor.submit(self.commit, group, self.now())

    def commit(self, group: Group, now: datetime) -> None:
        """On the store's thread: record a group, then hand the outcome back to the loop."""
        recorded: Tally | Exception
        try:
            recorded = self.record([(job, outcome) for job, outcome, _ in group], now)
        except Exception as exc:
            recorded = exc
        self.loop.call_soon_threadsafe(self.on_committed, group, recorded)

    def on_committed(self, group: Group, recorded: Tally | Exception) -> None:
        self.committing = False
        if isinstance(recorded, Exception):
            self.halt = True
            # their results are unknown to the store: keep them claimed, not released
            self.unrecorded.update(job.id for job, _, _ in group)
            self.lost_results.extend((job, outcome) for job, outcome, _ in group)
            error = store_error_from(recorded, "cannot record delivery results")
            for _, _, future in group:
                future.set_exception(error)
        else:
            self.held.difference_update(job.id for job, _, _ in group)
            r = self.report
            r.add(recorded)
            for _, _, future in group:
                future.set_result(None)
            if self.progress is not None:
                try:
                    self.progress(r.done, r.due)
                except Exception:  # a broken progress display must not stop the sending
                    log.exception("the progress callback failed; no more progress reports")
                    self.progress = None
        # results that came in meanwhile waited for this commit: theirs is next, unless
        # the linger still runs for messages in flight
        if self.results and (not self.in_flight or self.linger is None):
            self.flush()

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        renewer = asyncio.create_task(self.renewer())
        tasks = [
            asyncio.create_task(self.channel_task()) for _ in range(self.transport.concurrency)
        ]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        if self.prefetch is not None:
            await asyncio.gather(self.prefetch, return_exceptions=True)
        # every channel waited for its last result's commit, so none is left to commit
        self.closing = True
        renewer.cancel()
        await asyncio.gather(renewer, return_exceptions=True)
        # claims not attempted (stop, halt, limit) go back to the queue untouched (below);
        # those whose result could not be recorded stay claimed until their lease runs out
        # or the next run on this host takes them back
        # a broken store ends the send, not the process: the summary still says what was done
        failure = next((r for r in results if isinstance(r, StoreError)), None)
        if self.lost_results:
            await self.record_again()
        if self.systemic is not None:
            # the refusals that revealed it were about the relay: they go back in the queue
            await self.db(outbox.requeue, self.store, ids=self.refused)
        try:
            self.report.released = await self.db(
                outbox.release,
                self.store,
                self.worker_id,
                self.held - self.unrecorded,
                now=self.now(),
            )
        except Exception as exc:  # the store is still gone: the next run takes them back
            failure = failure or store_error_from(exc, "cannot give back the claims")
        self.executor.shutdown(wait=True)
        self.claim_executor.shutdown(wait=True)
        self.report.stopped = self.stop.is_set()
        if failure is not None:
            self.report.error, self.report.hint = failure.message, failure.hint
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, StoreError):
                raise result
        if self.systemic is not None:
            raise self.systemic


def _run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, also from a thread that already runs an event loop (the web front); on
    uvloop where it is installed (less CPU per message than asyncio's own loop)."""
    run: Callable[[Coroutine[Any, Any, T]], T] = asyncio.run if uvloop is None else uvloop.run
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run(coro)
    # a loop of its own needs a thread of its own, waited for here
    with ThreadPoolExecutor(1, thread_name_prefix="digestbot-send") as thread:
        return thread.submit(run, coro).result()


def send_due(
    store: Store,
    config: Config,
    *,
    limit: int | None = None,
    dry_run: bool = False,
    worker_id: str | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    now: Callable[[], datetime] | None = None,
) -> SendReport:
    """Send what is due in the outbox, batch after batch, until nothing is due.

    ``dry_run`` writes the due messages as .eml files into delivery.outdir and changes nothing
    in the store. ``stop`` set (e.g. on SIGTERM): claim no more, finish the messages in
    flight, give the other claims back.
    """
    now = now or clock.now
    stop = stop or threading.Event()
    transport: Transport = (
        FileTransport(config.path("delivery.outdir")) if dry_run else make_transport(config)
    )
    report = SendReport(
        dry_run=dry_run, transport=transport.name, worker_id=worker_id or outbox.new_worker_id()
    )
    started = time.perf_counter()
    if not dry_run:
        outbox.release_dead_local_claims(store)
        outbox.stop_inactive(store, now())
    at = now()
    due = outbox.count_due(store, at)
    report.due = due if limit is None else min(due, limit)
    if dry_run:
        jobs = outbox.peek_due(store, report.due, at)

        async def write_all() -> None:
            async with transport.channel() as channel:
                for job in jobs:
                    await channel.send(report.worker_id, job.recipient, job.message, job.message_id)
                    report.sent += 1
                    if progress is not None:
                        progress(report.sent, report.due)

        _run_coroutine(write_all())
    elif report.due:
        run = _Run(
            store,
            config,
            transport,
            report,
            limit=limit,
            progress=progress,
            stop=stop,
            now=now,
        )
        _run_coroutine(run.run())
        if report.sent and report.error is None:
            # PostgreSQL: statistics for the next run's joins, and the space of the rows
            # sending left dead (every digest updated, its bytes dropped) made reusable
            store.analyze("digests", "digest_messages", vacuum=True)
    report.elapsed = time.perf_counter() - started
    return report


def send_now(config: Config, message: bytes | EmailMessage, *, recipient: str) -> None:
    """Send one message through the configured transport right now (confirmation emails).

    Raises DeliveryError when it was not accepted.
    """
    data = message.as_bytes() if isinstance(message, EmailMessage) else bytes(message)
    headers = BytesHeaderParser().parsebytes(data)
    message_id = str(headers.get("Message-ID") or "") or f"now-{time.time_ns()}"
    transport = make_transport(config)

    async def go() -> None:
        async with transport.channel() as channel:
            await channel.send(Verp.from_config(config).base, recipient, data, message_id)

    try:
        _run_coroutine(go())
    except SendFailure as failure:
        raise DeliveryError(
            f"message to {recipient} was not delivered: {failure.reason}",
            hint="Check the address"
            if failure.kind == "bounced"
            else "Check the [smtp] settings and that the server is up, then try again.",
        ) from None


__all__ = ["SendReport", "send_due", "send_now"]
