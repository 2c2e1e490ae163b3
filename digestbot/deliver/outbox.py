"""The outbox: one row per subscriber and period, moved between states by short transactions.

States: ``queued`` -> ``sending`` (claimed, with a lease) -> ``sent``; ``sending`` -> ``retry``
-> ``sending``; ``failed`` is permanent; ``feed_only`` records an rss-only digest. A row is
marked ``sent`` only after the server accepted its message, in the same transaction that
records its papers as sent to the subscriber.
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, case, func, or_, select, update
from sqlalchemy.orm import Session

from ..scoring.picks import Pick
from ..store import Digest, DigestItem, SentPaper, Store, Subscriber
from ..store.models import UTCDateTime, utcnow

STATES = ("queued", "sending", "sent", "retry", "failed", "feed_only")
MAX_BACKOFF = timedelta(days=1)


def _insert(session: Session, model: Any) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING for the session's dialect."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(model)


def enqueue(
    session: Session,
    *,
    subscriber: Subscriber,
    period: str,
    message: bytes | None,
    message_id: str,
    subject: str,
    picks: Sequence[Pick],
    state: str = "queued",
) -> Digest | None:
    """Add a subscriber's digest for a period; None (and nothing written) if it exists.

    The unique (subscriber, period) constraint decides, so two runs building the same period
    at once, on SQLite or PostgreSQL, create one row between them.
    """
    if state not in ("queued", "feed_only"):
        raise ValueError(f"enqueue state must be queued or feed_only, not {state!r}")
    if state == "queued" and message is None:
        raise ValueError("a queued digest needs its message bytes")
    stmt = (
        _insert(session, Digest)
        .values(
            subscriber_id=subscriber.id,
            period=period,
            state=state,
            created_at=utcnow(),
            message_id=message_id,
            recipient=subscriber.email,
            subject=subject,
            message=message,
            attempts=0,
        )
        .on_conflict_do_nothing(index_elements=["subscriber_id", "period"])
        .returning(Digest)
    )
    # one round trip: the row comes back as a persistent Digest, or not at all on conflict
    digest = session.scalars(stmt).one_or_none()
    if digest is None:
        return None
    if picks:
        session.execute(
            DigestItem.__table__.insert(),
            [
                {
                    "digest_id": digest.id,
                    "paper_id": pick.paper_id,
                    "rank": rank,
                    "score": float(pick.score),
                    "why": pick.why(),
                }
                for rank, pick in enumerate(picks, 1)
            ],
        )
    return digest


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One digest for :func:`enqueue_many`: the arguments :func:`enqueue` takes."""

    subscriber: Subscriber
    period: str
    message: bytes | None
    message_id: str
    subject: str
    picks: Sequence[Pick]
    state: str = "queued"


def enqueue_many(session: Session, digests: Sequence[Outgoing]) -> list[int | None]:
    """Add many digests at once: each one's new id, or None (nothing written) if it exists.

    The same rows as :func:`enqueue` one by one, in two statements whatever the count: one
    INSERT ... ON CONFLICT DO NOTHING ... RETURNING for the digests (batched by SQLAlchemy's
    "insertmanyvalues") and one executemany for their papers. The caller's transaction is
    the batch: use one per batch of digests, not one per digest.
    """
    for d in digests:
        if d.state not in ("queued", "feed_only"):
            raise ValueError(f"enqueue state must be queued or feed_only, not {d.state!r}")
        if d.state == "queued" and d.message is None:
            raise ValueError("a queued digest needs its message bytes")
    if not digests:
        return []
    created = utcnow()
    table = Digest.__table__
    stmt = (
        _insert(session, table)
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
            "message": d.message,
            "attempts": 0,
        }
        for d in digests
    ]
    ids = {(r[1], r[2]): r[0] for r in session.execute(stmt, rows)}
    out: list[int | None] = []
    items: list[dict[str, Any]] = []
    for d in digests:
        # a digest listed twice in one call is written once, like two calls of enqueue
        digest_id = ids.pop((d.subscriber.id, d.period), None)
        out.append(digest_id)
        if digest_id is not None:
            items.extend(
                {
                    "digest_id": digest_id,
                    "paper_id": pick.paper_id,
                    "rank": rank,
                    "score": float(pick.score),
                    "why": pick.why(),
                }
                for rank, pick in enumerate(d.picks, 1)
            )
    if items:
        session.execute(DigestItem.__table__.insert(), items)
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


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def _due(now: datetime) -> Any:
    return or_(
        Digest.state == "queued",
        # a retry without a time (an old takeover given back) is due at once
        and_(
            Digest.state == "retry",
            or_(Digest.next_attempt_at.is_(None), Digest.next_attempt_at <= now),
        ),
        # a claim whose worker died: taken over once its lease runs out
        and_(Digest.state == "sending", Digest.lease_until < now),
    )


def count_due(store: Store, now: datetime) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(Digest).where(_due(now))) or 0)


def daily_headroom(store: Store, now: datetime, daily_limit: int) -> int:
    """Messages that may still go out in the sliding 24 hours, counting claims in flight."""
    with store.session() as s:
        sent = s.scalar(
            select(func.count())
            .select_from(Digest)
            .where(Digest.state == "sent", Digest.sent_at > now - timedelta(days=1))
        )
        sending = s.scalar(
            select(func.count()).select_from(Digest).where(Digest.state == "sending")
        )
    return daily_limit - int(sent or 0) - int(sending or 0)


def _active_subscribers() -> Any:
    return select(Subscriber.id).where(Subscriber.status == "active")


# What a sender needs of a claimed row, in Job's field order.
_JOB_COLUMNS = (
    Digest.id,
    Digest.subscriber_id,
    Digest.recipient,
    Digest.message_id,
    Digest.message,
    Digest.attempts,
)


def _job(row: Any, worker_id: str = "") -> Job:
    return Job(row[0], row[1], row[2], row[3], bytes(row[4] or b""), row[5], worker_id)


def claim(
    store: Store,
    worker_id: str,
    n: int,
    now: datetime,
    lease: timedelta,
    *,
    max_attempts: int | None = None,
) -> list[Job]:
    """Claim up to ``n`` due rows for this worker, in one short transaction.

    Due rows of readers who are no longer active are marked failed instead, and so are rows
    that used up ``max_attempts`` (a message whose sender keeps dying: each takeover or
    release of a dead claim counts an attempt), so neither is ever sent.

    PostgreSQL: the subquery's ``FOR UPDATE SKIP LOCKED`` lets workers on several hosts take
    disjoint batches without waiting on each other. SQLite: the single UPDATE runs under the
    database's one write lock (its first statement, so it waits rather than failing on a stale
    snapshot), and the state test is re-read under that lock, so two processes never claim the
    same row.
    """
    # the attempts a claim would count: a takeover of an expired claim is one more
    would_be = Digest.attempts + case((Digest.state == "sending", 1), else_=0)
    stale: list[Any] = [Digest.subscriber_id.not_in(_active_subscribers())]
    if max_attempts is not None:
        stale.append(would_be >= max_attempts)
    stale_ids = (
        select(Digest.id)
        .where(_due(now), or_(*stale))
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    give_up = (
        update(Digest)
        .where(Digest.id.in_(stale_ids), _due(now))
        .values(
            state="failed",
            attempts=would_be,
            last_error=case(
                (
                    Digest.subscriber_id.not_in(_active_subscribers()),
                    "subscriber is not active",
                ),
                else_=f"gave up after {max_attempts} attempts: its sender stopped while sending it",
            ),
            claimed_by=None,
            lease_until=None,
        )
        .execution_options(synchronize_session=False)
    )
    active = Digest.subscriber_id.in_(_active_subscribers())
    # a statement of its own: inside IN (...) PostgreSQL may rescan a LIMIT subquery
    due_ids = (
        select(Digest.id)
        .where(_due(now), active)
        .order_by(Digest.id)
        .limit(n)
        .with_for_update(skip_locked=True)
    )
    stmt = (
        update(Digest)
        .where(Digest.id.in_(bindparam("ids", expanding=True)), _due(now), active)
        .values(
            # a takeover counts as an attempt, so a message that kills workers cannot loop
            attempts=Digest.attempts + case((Digest.state == "sending", 1), else_=0),
            state="sending",
            claimed_by=worker_id,
            lease_until=now + lease,
        )
        .returning(*_JOB_COLUMNS)
        .execution_options(synchronize_session=False)
    )
    with store.session() as s:
        # an UPDATE first: on SQLite it takes the write lock, so both see the same rows
        s.execute(give_up)
        ids = list(s.scalars(due_ids))
        rows = s.execute(stmt, {"ids": ids}).all() if ids else []
    jobs = [_job(r, worker_id) for r in rows]
    jobs.sort(key=lambda j: j.id)
    return jobs


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
    stmt = (
        update(Digest)
        .where(
            Digest.id.in_(id_list),
            Digest.state == "sending",
            Digest.claimed_by == worker_id,
        )
        .values(lease_until=now + lease)
        .returning(Digest.id)
        .execution_options(synchronize_session=False)
    )
    with store.session() as s:
        return set(s.scalars(stmt).all())


def peek_due(store: Store, n: int | None, now: datetime) -> list[Job]:
    """Due rows without claiming them (for a dry run)."""
    stmt = select(*_JOB_COLUMNS).where(_due(now))
    stmt = stmt.order_by(Digest.id).limit(n)
    with store.session() as s:
        return [_job(r) for r in s.execute(stmt)]


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
    now = now or utcnow()
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
        return s.execute(stmt).rowcount or 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def release_dead_local_claims(store: Store) -> int:
    """Claims held by processes of this host that no longer exist are released now.

    Without this a rerun after a crash would wait out the lease; claims of other hosts (and
    of live processes here) are left to their lease.
    """
    host = socket.gethostname()
    with store.session() as s:
        owners = s.scalars(
            select(Digest.claimed_by).where(Digest.state == "sending").distinct()
        ).all()
    released = 0
    for owner in owners:
        if not owner:
            continue
        parts = owner.rsplit(":", 2)
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid != os.getpid() and not _pid_alive(pid):
            released += release(store, owner, count_attempt=True)
    return released


def stop_inactive(store: Store, now: datetime) -> int:
    """Due digests of readers who bounced or left are stopped rather than sent."""
    inactive = select(Subscriber.id).where(Subscriber.status != "active")
    stmt = (
        update(Digest)
        .where(Digest.state.in_(("queued", "retry")), Digest.subscriber_id.in_(inactive))
        .values(state="failed", last_error="subscriber is not active", lease_until=None)
        .execution_options(synchronize_session=False)
    )
    with store.session() as s:
        return s.execute(stmt).rowcount or 0


# --- recording results ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str  # sent | retry | failed | bounced
    error: str | None = None


def backoff_delay(attempts: int, base: float, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with +-25% jitter, so retries of one outage spread out."""
    rng = rng or random
    delay = base * (2 ** max(attempts - 1, 0)) * rng.uniform(0.75, 1.25)
    return min(timedelta(seconds=delay), MAX_BACKOFF)


@dataclass
class Tally:
    """What happened to the digests of one group of results (or, summed, of a whole run)."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    bounced: int = 0
    lost: int = 0  # claims taken over by another worker meanwhile: nothing written for them

    def add(self, other: Tally) -> None:
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.bounced += other.bounced
        self.lost += other.lost


def record(
    store: Store,
    results: Sequence[tuple[Job, Outcome]],
    now: datetime,
    *,
    max_attempts: int,
    backoff_seconds: float,
) -> Tally:
    """Write a group of results in one transaction: the group commit of the sender.

    Only rows still claimed by the job's worker (``state = 'sending'``) are written: a claim
    another worker took over is its business now, and counted in ``Tally.lost``.
    """
    tally = Tally()
    if not results:
        return tally
    by_worker: dict[str, list[int]] = {}
    for job, _ in results:
        by_worker.setdefault(job.worker, []).append(job.id)
    held_stmt = (
        update(Digest)
        .where(
            Digest.state == "sending",
            or_(
                *(and_(Digest.claimed_by == w, Digest.id.in_(ids)) for w, ids in by_worker.items())
            ),
        )
        # a no-op write: it takes the row locks (and SQLite's write lock) before anything else
        .values(lease_until=Digest.lease_until)
        .returning(Digest.id)
        .execution_options(synchronize_session=False)
    )
    with store.session() as s:
        held = set(s.scalars(held_stmt).all())
        tally.lost = sum(1 for job, _ in results if job.id not in held)
        results = [(job, outcome) for job, outcome in results if job.id in held]
        _record_held(s, results, now, tally, max_attempts, backoff_seconds)
    return tally


def _record_held(
    s: Session,
    results: Sequence[tuple[Job, Outcome]],
    now: datetime,
    tally: Tally,
    max_attempts: int,
    backoff_seconds: float,
) -> None:
    sent_rows: list[dict[str, Any]] = []
    other_rows: list[dict[str, Any]] = []
    bounced: dict[int, str] = {}
    for job, outcome in results:
        if outcome.kind == "sent":
            tally.sent += 1
            sent_rows.append({"id": job.id})
        elif outcome.kind == "retry":
            attempts = job.attempts + 1
            if attempts >= max_attempts:
                tally.failed += 1
                other_rows.append(
                    _row(
                        job,
                        "failed",
                        attempts,
                        None,
                        f"gave up after {attempts} attempts: {outcome.error}",
                    )
                )
            else:
                tally.retried += 1
                when = now + backoff_delay(attempts, backoff_seconds)
                other_rows.append(_row(job, "retry", attempts, when, outcome.error))
        elif outcome.kind == "bounced":
            tally.bounced += 1
            bounced[job.subscriber_id] = outcome.error or "bounced"
            other_rows.append(
                _row(job, "failed", job.attempts + 1, None, f"bounced: {outcome.error}")
            )
        else:
            tally.failed += 1
            other_rows.append(_row(job, "failed", job.attempts + 1, None, outcome.error))

    if sent_rows:
        params = {"ids": [r["id"] for r in sent_rows], "now": now}
        mark_sent, sent_papers = _sent_statements(s.get_bind().dialect.name)
        s.execute(mark_sent, params)
        s.execute(sent_papers, params)
    if other_rows:
        s.execute(update(Digest), other_rows)
    for subscriber_id, reason in bounced.items():
        s.execute(
            update(Subscriber)
            .where(Subscriber.id == subscriber_id)
            .values(status="bounced", bounced_reason=reason, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        # their other digests stop too: the address does not exist
        s.execute(
            update(Digest)
            .where(
                Digest.subscriber_id == subscriber_id,
                Digest.state.in_(("queued", "retry")),
            )
            .values(state="failed", last_error=f"subscriber bounced: {reason}")
            .execution_options(synchronize_session=False)
        )


_SENT_STATEMENTS: dict[str, tuple[Any, Any]] = {}


def _sent_statements(dialect: str) -> tuple[Any, Any]:
    """Mark digests sent, and record their papers as sent, for parameters ``ids`` and ``now``.

    Built once per dialect with an expanding ``ids`` parameter, so each group commit reuses
    the compiled SQL instead of building and compiling two statements again (that took more
    time than the database work for the small groups a busy sender commits).
    """
    cached = _SENT_STATEMENTS.get(dialect)
    if cached is not None:
        return cached
    digests = Digest.__table__
    ids = bindparam("ids", expanding=True)
    now = bindparam("now", type_=UTCDateTime())
    mark_sent = (
        update(digests)
        .where(digests.c.id.in_(ids))
        .values(
            state="sent",
            sent_at=now,
            claimed_by=None,
            lease_until=None,
            last_error=None,
            attempts=digests.c.attempts + 1,
        )
    )
    items = DigestItem.__table__
    papers = (
        select(digests.c.subscriber_id, items.c.paper_id, digests.c.id, now)
        .join(items, items.c.digest_id == digests.c.id)
        .where(digests.c.id.in_(ids))
    )
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    sent_papers = (
        insert(SentPaper.__table__)
        .from_select(["subscriber_id", "paper_id", "digest_id", "sent_at"], papers)
        .on_conflict_do_nothing()
    )
    _SENT_STATEMENTS[dialect] = cached = (mark_sent, sent_papers)
    return cached


def _row(
    job: Job, state: str, attempts: int, next_at: datetime | None, error: str | None
) -> dict[str, Any]:
    return {
        "id": job.id,
        "state": state,
        "attempts": attempts,
        "next_attempt_at": next_at,
        "last_error": (error or "")[:2000],
        "claimed_by": None,
        "lease_until": None,
    }


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
    keys = (
        "id",
        "period",
        "recipient",
        "state",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "last_error",
        "message_id",
        "claimed_by",
    )
    with store.session() as s:
        return [dict(zip(keys, row, strict=True)) for row in s.execute(stmt)]


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
        return s.execute(stmt).rowcount or 0
