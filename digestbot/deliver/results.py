"""Recording send results: one short transaction per group of results (the sender's group
commit), in SQLAlchemy Core statements built at import.

A busy sender commits a group every few milliseconds, so the per-commit overhead counts: built
and compiled once, with expanding ``ids`` parameters, and run on a plain connection, these
statements cost a fraction of building ORM statements for each group (which took more time
than the database work).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import BindParameter, Connection, Table, bindparam, delete, select, update

from ..store import Digest, Store, Subscriber
from ..store.models import DigestMessage, UTCDateTime

if TYPE_CHECKING:
    from .outbox import Job

MAX_BACKOFF = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str  # sent | retry | failed | bounced
    error: str | None = None


def backoff_delay(attempts: int, base: float, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with +-25% jitter, so retries of one outage spread out."""
    uniform = rng.uniform if rng is not None else random.uniform
    delay = base * (2 ** max(attempts - 1, 0)) * uniform(0.75, 1.25)
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
        for field in fields(Tally):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


_digests = cast(Table, Digest.__table__)
_ids: BindParameter[list[int]] = bindparam("ids", expanding=True)
_now = bindparam("now", type_=UTCDateTime())

# the claims a worker still holds among ``ids``
_HELD = update(_digests).where(
    _digests.c.state == "sending",
    _digests.c.claimed_by == bindparam("worker"),
    _digests.c.id.in_(_ids),
)
# Other outcomes than sent: a no-op write, which takes the row locks before they are read
# and written.
_HOLD = _HELD.values(lease_until=_digests.c.lease_until).returning(_digests.c.id)
# a renewal of the leases (outbox.renew)
RENEW = _HELD.values(lease_until=bindparam("until", type_=UTCDateTime())).returning(_digests.c.id)
# Sent: marked in the statement that checks the claim is still the worker's (the ids it
# returns), one statement fewer per group than holding first
_MARK_SENT = (
    _HELD.values(
        state="sent",
        sent_at=_now,
        claimed_by=None,
        lease_until=None,
        last_error=None,
        attempts=_digests.c.attempts + 1,
    )
    .returning(_digests.c.id)
    # SQLite: without it, an UPDATE of several rows that could break a NOT NULL constraint
    # half-way writes a statement journal (a temporary file, opened and deleted each time:
    # half of a group commit's cost) to undo only itself. A failure raises all the same and
    # the whole transaction is rolled back, so nothing half-done is ever committed.
    .prefix_with("OR FAIL", dialect="sqlite")
)
# one row of another outcome (executemany): retry, failed or bounced
_MARK_OTHER = (
    update(_digests)
    .where(_digests.c.id == bindparam("row_id"))
    .values(
        state=bindparam("new_state"),
        attempts=bindparam("new_attempts"),
        next_attempt_at=bindparam("next_at", type_=UTCDateTime()),
        last_error=bindparam("error"),
        claimed_by=None,
        lease_until=None,
    )
)
_subscribers = cast(Table, Subscriber.__table__)
_BOUNCE = (
    update(_subscribers)
    .where(_subscribers.c.id == bindparam("sub_id"))
    .values(status="bounced", bounced_reason=bindparam("reason"), updated_at=_now)
)
# a bounced reader's other digests stop too: the address does not exist
_STOP_BOUNCED = (
    update(_digests)
    .where(
        _digests.c.subscriber_id == bindparam("sub_id"),
        _digests.c.state.in_(("queued", "retry")),
    )
    .values(state="failed", last_error=bindparam("error"))
)
# A message that can no longer be sent (sent, or its reader bounced) is not kept: the
# row and its papers stay for history (until store.retention_days), the bytes go.
_DROP_MESSAGES = delete(DigestMessage).where(DigestMessage.digest_id.in_(_ids))
_DROP_BOUNCED_MESSAGES = delete(DigestMessage).where(
    DigestMessage.digest_id.in_(
        select(_digests.c.id).where(
            _digests.c.subscriber_id == bindparam("sub_id"), _digests.c.state == "failed"
        )
    )
)


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
    sent: dict[str, list[int]] = {}
    others: dict[str, list[int]] = {}
    for job, outcome in results:
        (sent if outcome.kind == "sent" else others).setdefault(job.worker, []).append(job.id)
    with store.outbox_transaction() as conn:
        sent_ids: list[int] = []
        for worker, ids in sent.items():
            sent_ids.extend(conn.scalars(_MARK_SENT, {"worker": worker, "ids": ids, "now": now}))
        held = set(sent_ids)
        for worker, ids in others.items():
            held.update(conn.scalars(_HOLD, {"worker": worker, "ids": ids}))
        tally.lost = sum(1 for job, _ in results if job.id not in held)
        tally.sent = len(sent_ids)
        if sent_ids:
            # the digest's items, now of a sent digest, are what keeps its papers from
            # being picked for this reader again
            conn.execute(_DROP_MESSAGES, {"ids": sent_ids})
        failed = [(j, o) for j, o in results if j.id in held and o.kind != "sent"]
        _record_failures(conn, failed, now, tally, max_attempts, backoff_seconds)
    return tally


def _record_failures(
    conn: Connection,
    results: Sequence[tuple[Job, Outcome]],
    now: datetime,
    tally: Tally,
    max_attempts: int,
    backoff_seconds: float,
) -> None:
    """Retries, failures and bounces of claims still held."""
    other_rows: list[dict[str, Any]] = []
    bounced: dict[int, str] = {}
    for job, outcome in results:
        attempts, error = job.attempts + 1, outcome.error
        if outcome.kind == "retry" and attempts < max_attempts:
            tally.retried += 1
            when = now + backoff_delay(attempts, backoff_seconds)
            other_rows.append(_row(job, "retry", attempts, when, error))
            continue
        if outcome.kind == "retry":
            error = f"gave up after {attempts} attempts: {error}"
        if outcome.kind == "bounced":
            tally.bounced += 1
            bounced[job.subscriber_id] = error or "bounced"
            error = f"bounced: {error}"
        else:
            tally.failed += 1
        other_rows.append(_row(job, "failed", attempts, None, error))
    if other_rows:
        conn.execute(_MARK_OTHER, other_rows)
    for subscriber_id, reason in bounced.items():
        conn.execute(_BOUNCE, {"sub_id": subscriber_id, "reason": reason, "now": now})
        conn.execute(
            _STOP_BOUNCED, {"sub_id": subscriber_id, "error": f"subscriber bounced: {reason}"}
        )
        conn.execute(_DROP_BOUNCED_MESSAGES, {"sub_id": subscriber_id})


def _row(
    job: Job, state: str, attempts: int, next_at: datetime | None, error: str | None
) -> dict[str, Any]:
    return {
        "row_id": job.id,
        "new_state": state,
        "new_attempts": attempts,
        "next_at": next_at,
        "error": (error or "")[:2000],
    }
