"""The outbox: one row per subscriber and period, moved between states by short transactions.

States: ``queued`` -> ``sending`` (claimed, with a lease) -> ``sent``; ``sending`` -> ``retry``
-> ``sending``; ``failed`` is permanent; ``feed_only`` records an rss-only digest. A row is
marked ``sent`` only after the server accepted its message, in the same transaction that
records its papers as sent to the subscriber.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    Connection,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from .. import clock
from ..scoring.picks import Pick
from ..states import DIGEST_STATES
from ..store import Digest, DigestItem, Store, Subscriber
from ..store.bulk import insert_many
from ..store.models import DigestMessage

# recording results lives in .results; outbox.record stays the sender's (and tests') handle
from .results import RENEW
from .results import Outcome as Outcome
from .results import Tally as Tally
from .results import backoff_delay as backoff_delay
from .results import record as record

STATES = DIGEST_STATES


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One digest for :func:`enqueue_many`."""

    subscriber: Subscriber
    period: str
    message: bytes | None
    message_id: str
    subject: str
    picks: Sequence[Pick]
    state: str = "queued"


def enqueue_many(session: Session, digests: Sequence[Outgoing]) -> list[int | None]:
    """Add many digests at once: each one's new id, or None (nothing written) if it exists.

    The unique (subscriber, period) constraint decides, so two runs building the same period
    at once, on SQLite or PostgreSQL, create one row between them.

    Three statements whatever the count: one INSERT ... ON CONFLICT DO NOTHING ... RETURNING
    for the digests (batched by SQLAlchemy's "insertmanyvalues") and one executemany each for
    their messages and their papers. The caller's transaction is the batch: use one per batch
    of digests, not one per digest.
    """
    for d in digests:
        if d.state not in ("queued", "feed_only"):
            raise ValueError(f"enqueue state must be queued or feed_only, not {d.state!r}")
        if d.state == "queued" and d.message is None:
            raise ValueError("a queued digest needs its message bytes")
    if not digests:
        return []
    created = clock.now()
    table = Digest.__table__
    # INSERT ... ON CONFLICT DO NOTHING, which each dialect spells in its own insert()
    insert: Any = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(table)
        .on_conflict_do_nothing(index_elements=["subscriber_id", "period"])
        .returning(table.c.id, table.c.subscriber_id, table.c.period)
    )
    rows = [
        {
            "subscriber_id": d.subscriber.id,
            "period": d.period,
            "state": d.state,
            "created_at": created,
            "message_id": d.message_id,
            "recipient": d.subscriber.email,
            "subject": d.subject,
            "attempts": 0,
        }
        for d in digests
    ]
    ids = {(r[1], r[2]): r[0] for r in session.execute(stmt, rows)}
    out: list[int | None] = []
    messages: list[tuple[int, bytes]] = []
    items: list[tuple[int, str, int, float, dict[str, object]]] = []
    for d in digests:
        # a digest listed twice in one call is written once, like two calls
        digest_id = ids.pop((d.subscriber.id, d.period), None)
        out.append(digest_id)
        if digest_id is not None:
            if d.message is not None:
                messages.append((digest_id, d.message))
            items.extend(
                (digest_id, pick.paper_id, rank, float(pick.score), pick.why())
                for rank, pick in enumerate(d.picks, 1)
            )
    # through the driver: SQLAlchemy's typed executemany spent more preparing ten items'
    # parameters per digest than the database spent writing them
    conn = session.connection()
    insert_many(conn, cast(Table, DigestMessage.__table__), ["digest_id", "message"], messages)
    columns = ["digest_id", "paper_id", "rank", "score", "why"]
    insert_many(conn, cast(Table, DigestItem.__table__), columns, items)
    return out


# --- claiming ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed outbox row: what the transport needs, and what the result is recorded on."""

    id: int
    subscriber_id: int
    recipient: str
    message_id: str
    message: bytes
    attempts: int
    worker: str = ""  # the claim's holder: results are written only while it still holds it


def _machine() -> str:
    """This boot of this machine's PID namespace: where a PID names one process. Host name
    and PID alone are not enough: containers share a host name across PID namespaces, and
    after a reboot the same PID is another process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:12]
    except OSError:
        boot = "noboot"
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        namespace = "nons"
    # ':' separates the fields; a host name never holds one
    return f"{socket.gethostname()}/{boot}/{namespace}"


def new_worker_id() -> str:
    """``machine:pid:random``: the claims' holder, recognisable as dead from this machine."""
    return f"{_machine()}:{os.getpid()}:{os.urandom(3).hex()}"


def _due_ranges(now: datetime | BindParameter[datetime]) -> tuple[Any, ...]:
    """What makes a row due, one condition per due state, in the order claims take them."""
    return (
        # a claim whose worker died: taken over once its lease runs out
        and_(Digest.state == "sending", Digest.lease_until < now),
        and_(
            Digest.state == "retry",
            # a retry without a time (a dead worker's claim given back) is due at once
            or_(Digest.next_attempt_at.is_(None), Digest.next_attempt_at <= now),
        ),
        Digest.state == "queued",
    )


def _due(now: datetime | BindParameter[datetime]) -> Any:
    return or_(*_due_ranges(now))


def count_due(store: Store, now: datetime) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(Digest).where(_due(now))) or 0)


def daily_headroom(store: Store, now: datetime, daily_limit: int) -> int:
    """Messages that may still go out in the sliding 24 hours, counting claims in flight."""
    with store.session() as s:
        return _headroom(s, now, daily_limit)


def _headroom(s: Session | Connection, now: datetime, daily_limit: int) -> int:
    sent = s.scalar(
        select(func.count())
        .select_from(Digest)
        .where(Digest.state == "sent", Digest.sent_at > now - timedelta(days=1))
    )
    sending = s.scalar(select(func.count()).select_from(Digest).where(Digest.state == "sending"))
    return daily_limit - int(sent or 0) - int(sending or 0)


# Serialises claims under a daily limit across PostgreSQL workers (any constant will do)
_DAILY_LIMIT_LOCK = 0x64696765


# What a sender needs of a claimed row, in Job's field order but for the message, which is
# read from its own table (see DigestMessage)
_JOB_COLUMNS = (
    Digest.id,
    Digest.subscriber_id,
    Digest.recipient,
    Digest.message_id,
    Digest.attempts,
)
_MESSAGES = select(DigestMessage.digest_id, DigestMessage.message).where(
    DigestMessage.digest_id.in_(bindparam("ids", expanding=True))
)
_PG_MESSAGES = "SELECT digest_id, message FROM digest_messages WHERE digest_id = ANY(%s)"


def _messages(s: Session | Connection, ids: list[int]) -> dict[int, bytes]:
    """The messages of digests ``ids``, in the caller's transaction."""
    conn = s.connection() if isinstance(s, Session) else s
    if conn.dialect.name != "postgresql":
        return {digest_id: message for digest_id, message in conn.execute(_MESSAGES, {"ids": ids})}
    # as stored, in the binary result format: as text, a claim's 5 MB of messages came
    # back hex-escaped, twice the bytes, escaped by the server and decoded here (about a
    # third of the time a claim took)
    driver = conn.connection.driver_connection
    assert driver is not None  # an open connection in a transaction
    with driver.cursor(binary=True) as cur:
        cur.execute(_PG_MESSAGES, [ids])
        return dict(cur.fetchall())


def _jobs(s: Session | Connection, rows: Sequence[Any], worker_id: str = "") -> list[Job]:
    """Jobs for outbox rows (``_JOB_COLUMNS``), with their messages, in id order."""
    if not rows:
        return []
    messages = _messages(s, [r[0] for r in rows])
    jobs = [
        Job(r[0], r[1], r[2], r[3], bytes(messages.get(r[0]) or b""), r[4], worker_id) for r in rows
    ]
    jobs.sort(key=lambda j: j.id)
    return jobs


@dataclass(slots=True)
class QueueCursor:
    """How far one worker's claims have read the queued rows, in id order.

    On PostgreSQL a claimed row's old entry in the (state, id) index stays until VACUUM, so
    a claim that read the queue from its start passed over every row claimed before it: at
    100,000 readers a claim took 14 ms by the end of the send, and the stage's claims 13 s
    in all, growing with the square of the outbox. A claim reads above the cursor, and below
    it (rows given back, or skipped while another worker held them) only when nothing is
    left above: nothing is passed over for good.
    """

    queued_after: int = 0


def _candidates(s: Connection, now: datetime, n: int, cursor: QueueCursor) -> list[int]:
    """Up to ``n`` due rows, locked (PostgreSQL: skipping rows other workers hold): first
    claims whose worker died and retries that are due, then queued rows, each in id order.
    Readers whose sender died, or whose relay said "later", have waited longest: they go
    before the fresh queue, never after it. One LIMITed range per due state, each read in
    id order off the (state, id) index, queued rows from the cursor on: the cost does not
    grow with the outbox."""
    dead, retry, queued = _due_ranges(now)
    above = and_(queued, Digest.id > cursor.queued_after)
    below = and_(queued, Digest.id <= cursor.queued_after)
    ids: list[int] = []
    for where in (dead, retry, above, below):
        if len(ids) >= n:
            break
        query = select(Digest.id).where(where).order_by(Digest.id).limit(n - len(ids))
        found = list(s.scalars(query.with_for_update(skip_locked=True)))
        if where is above and found:
            cursor.queued_after = found[-1]
        ids.extend(found)
    return ids


def _reader_active() -> Any:
    # correlated: one primary-key lookup per candidate row, never the list of all readers
    return (
        select(Subscriber.id)
        .where(Subscriber.id == Digest.subscriber_id, Subscriber.status == "active")
        .exists()
    )


def claim(
    store: Store,
    worker_id: str,
    n: int,
    now: datetime,
    lease: timedelta,
    *,
    max_attempts: int | None = None,
    daily_limit: int = 0,
    cursor: QueueCursor | None = None,
) -> list[Job]:
    """Claim up to ``n`` due rows for this worker in one short transaction: rows whose
    sender died and due retries first, then queued rows, each in id order.

    With a ``daily_limit``, no more than the sliding 24 hours' headroom (sent plus in flight,
    see :func:`daily_headroom`), however many workers claim at once.

    Due rows of readers who are no longer active are marked failed instead, and so are rows
    that used up ``max_attempts`` (a message whose sender keeps dying: each takeover or
    release of a dead claim counts an attempt), so neither is ever sent.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` lets workers on several hosts take disjoint
    batches without waiting on each other. SQLite: the transaction starts with the
    database's one write lock (``BEGIN IMMEDIATE``), so two processes never claim the same
    row.

    A worker that claims again and again passes its ``cursor``, so that each claim starts
    where the last one stopped (see :class:`QueueCursor`).
    """
    cursor = cursor or QueueCursor()
    with store.outbox_transaction() as s:
        if s.dialect.name == "sqlite":
            s.exec_driver_sql("BEGIN IMMEDIATE")
        if daily_limit:
            # the headroom must be read and spent in one step, or two workers reading it at
            # once would each spend all of it (SQLite already holds its write lock here)
            if s.dialect.name == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DAILY_LIMIT_LOCK})
            n = min(n, _headroom(s, now, daily_limit))
        while n > 0 and (ids := _candidates(s, now, n, cursor)):
            rows = _claim_ids(s, ids, worker_id, now, lease, max_attempts)
            if rows:
                return _jobs(s, rows, worker_id)
            # every candidate was given up (readers gone, attempts used): look further
        return []


def _claim_ids(
    s: Connection,
    ids: list[int],
    worker_id: str,
    now: datetime,
    lease: timedelta,
    max_attempts: int | None,
) -> Sequence[Any]:
    """Fail the candidates that must not be sent, claim the others: their job columns."""
    # a takeover of an expired claim counts as an attempt, so a message that kills its
    # sender cannot loop
    would_be = Digest.attempts + case((Digest.state == "sending", 1), else_=0)
    mine = and_(Digest.id.in_(ids), _due(now))
    gone = ~_reader_active()
    stale = or_(gone, would_be >= max_attempts) if max_attempts is not None else gone
    # OR FAIL (SQLite): no statement journal, see results._MARK_SENT; the claim's
    # transaction is rolled back whole on any error
    s.execute(
        update(Digest)
        .where(mine, stale)
        .prefix_with("OR FAIL", dialect="sqlite")
        .values(
            state="failed",
            attempts=would_be,
            last_error=case(
                (gone, "subscriber is not active"),
                else_=f"gave up after {max_attempts} attempts: its sender stopped while sending it",
            ),
            claimed_by=None,
            lease_until=None,
        )
    )
    claimed = (
        update(Digest)
        .where(mine, _reader_active())
        .prefix_with("OR FAIL", dialect="sqlite")
        .values(
            attempts=would_be,
            state="sending",
            claimed_by=worker_id,
            lease_until=now + lease,
        )
        .returning(*_JOB_COLUMNS)
    )
    rows = s.execute(claimed).all()
    # a reader who left or bounced will never get these: their bytes go now
    s.execute(
        delete(DigestMessage).where(
            DigestMessage.digest_id.in_(
                select(Digest.id).where(
                    Digest.id.in_(ids), Digest.last_error == "subscriber is not active"
                )
            )
        )
    )
    return rows


def renew(
    store: Store, worker_id: str, ids: Iterable[int], now: datetime, lease: timedelta
) -> set[int]:
    """Extend the lease of the claims this worker still holds; returns their ids.

    A claim not among them was taken over by another worker (this one was too slow): it must
    not be sent, nor its result recorded, by this one.
    """
    id_list = list(ids)
    if not id_list:
        return set()
    with store.session() as s:
        return set(s.scalars(RENEW, {"worker": worker_id, "ids": id_list, "until": now + lease}))


def peek_due(store: Store, n: int | None, now: datetime, *, batch: int = 500) -> Iterator[Job]:
    """Up to ``n`` due rows in id order, without claiming them (for a dry run).

    Read a batch at a time, each in its own short transaction: a dry run of a big outbox
    holds one batch of messages in memory, not all of them.
    """
    after, left = 0, n
    while left is None or left > 0:
        size = batch if left is None else min(batch, left)
        stmt = (
            select(*_JOB_COLUMNS)
            .where(_due(now), Digest.id > after)
            .order_by(Digest.id)
            .limit(size)
        )
        with store.session() as s:
            jobs = _jobs(s, s.execute(stmt).all())
        yield from jobs
        if len(jobs) < size:
            return
        after = jobs[-1].id
        if left is not None:
            left -= len(jobs)


def release(
    store: Store,
    worker_id: str,
    ids: Iterable[int] | None = None,
    *,
    now: datetime | None = None,
    count_attempt: bool = False,
) -> int:
    """Give back claims not attempted: they become due again at once, attempts unchanged.

    ``count_attempt``: the claim's holder died, maybe while sending it; that counts as an
    attempt, so a message that kills its sender is not retried forever.
    """
    now = now or clock.now()
    attempts = Digest.attempts + 1 if count_attempt else Digest.attempts
    stmt = (
        update(Digest)
        .where(Digest.state == "sending", Digest.claimed_by == worker_id)
        .values(
            state=case((attempts > 0, "retry"), else_="queued"),
            attempts=attempts,
            # a retry needs a time to be due: a taken-over claim has none yet
            next_attempt_at=func.coalesce(Digest.next_attempt_at, now),
            claimed_by=None,
            lease_until=None,
        )
        .execution_options(synchronize_session=False)
    )
    if ids is not None:
        id_list = list(ids)
        if not id_list:
            return 0
        stmt = stmt.where(Digest.id.in_(id_list))
    with store.session() as s:
        return cast(CursorResult[Any], s.execute(stmt)).rowcount or 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def release_dead_local_claims(store: Store) -> int:
    """Claims held by dead processes of this machine are released now: same host, boot
    and PID namespace and no such process, or the same host before its last boot.

    Without this a rerun after a crash would wait out the lease; claims of other hosts,
    of other PID namespaces (containers) and of live processes here are left to their
    lease.
    """
    machine = _machine()
    host, boot = machine.split("/")[:2]
    with store.session() as s:
        owners = s.scalars(
            select(Digest.claimed_by).where(Digest.state == "sending").distinct()
        ).all()
    released = 0
    for owner in owners:
        parts = (owner or "").rsplit(":", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        where, pid = parts[0], int(parts[1])
        if where == machine:
            dead = pid != os.getpid() and not _pid_alive(pid)
        else:  # the same host name, an earlier boot: every process of it is gone
            held = where.split("/")
            dead = len(held) == 3 and held[0] == host and held[1] != boot
        if dead and owner:
            released += release(store, owner, count_attempt=True)
    return released


def stop_inactive(store: Store, now: datetime) -> int:
    """Due digests of readers who bounced or left are stopped rather than sent."""
    inactive = select(Subscriber.id).where(Subscriber.status != "active")
    stmt = (
        update(Digest)
        .where(Digest.state.in_(("queued", "retry")), Digest.subscriber_id.in_(inactive))
        .values(state="failed", last_error="subscriber is not active", lease_until=None)
        .returning(Digest.id)
        .execution_options(synchronize_session=False)
    )
    with store.session() as s:
        stopped = list(s.scalars(stmt))
        if stopped:  # never to be sent: the bytes go, the rows stay for history
            s.execute(delete(DigestMessage).where(DigestMessage.digest_id.in_(stopped)))
        return len(stopped)


# --- reading -------------------------------------------------------------------------------


def state_counts(store: Store) -> dict[str, int]:
    with store.session() as s:
        rows = s.execute(select(Digest.state, func.count()).group_by(Digest.state)).all()
    return {state: int(n) for state, n in rows}


def list_digests(
    store: Store, *, state: str | None = None, limit: int | None = 50
) -> list[dict[str, Any]]:
    stmt = select(
        Digest.id,
        Digest.period,
        Digest.recipient,
        Digest.state,
        Digest.attempts,
        Digest.next_attempt_at,
        Digest.sent_at,
        Digest.last_error,
        Digest.message_id,
        Digest.claimed_by,
    ).order_by(Digest.id.desc())
    if state:
        stmt = stmt.where(Digest.state == state)
    if limit:
        stmt = stmt.limit(limit)
    with store.session() as s:
        return [dict(row) for row in s.execute(stmt).mappings()]


def requeue(store: Store, *, ids: Sequence[int] | None = None, failed: bool = False) -> int:
    """Put failed digests (or the given ones) back in the queue for another try."""
    stmt = update(Digest).where(Digest.state.in_(("failed", "retry")))
    if ids is not None:
        stmt = stmt.where(Digest.id.in_(list(ids)))
    elif not failed:
        return 0
    stmt = stmt.values(
        state="queued", attempts=0, next_attempt_at=None, last_error=None
    ).execution_options(synchronize_session=False)
    with store.session() as s:
        return cast(CursorResult[Any], s.execute(stmt)).rowcount or 0
