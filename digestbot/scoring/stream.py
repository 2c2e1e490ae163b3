"""Streaming subscribers from the store in chunks, so memory stays flat as they grow."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import select

from ..store import Store, Subscriber
from .engine import batched

# what scoring reads of a subscriber; rows of these columns score like full subscribers
SCORING_COLUMNS = (
    Subscriber.id,
    Subscriber.keywords,
    Subscriber.last_digest_at,
    Subscriber.max_items,
    Subscriber.min_score,
)
# bound parameters per IN list: well under SQLite's limit on every version
_IN_BATCH = 900


def iter_subscriber_chunks(
    store: Store,
    *,
    ids: Iterable[int] | None = None,
    chunk_size: int = 20000,
    statuses: Sequence[str] = ("active",),
    light: bool = False,
) -> Iterator[list[Any]]:
    """Subscribers in id order, ``chunk_size`` at a time, each chunk read in its own
    transaction. With ``ids``, those subscribers (whatever their status); otherwise all with
    one of ``statuses``. ``light=True`` yields rows of :data:`SCORING_COLUMNS` only, which
    load several times faster than full objects.
    """
    what: Any = select(*SCORING_COLUMNS) if light else select(Subscriber)
    if ids is not None:
        for batch in batched(sorted(set(ids)), chunk_size):
            rows: list[Any] = []
            with store.session() as session:
                for part in batched(batch, _IN_BATCH):
                    query = what.where(Subscriber.id.in_(part)).order_by(Subscriber.id)
                    rows.extend(session.execute(query).all() if light else session.scalars(query))
            yield rows
        return
    last = None
    while True:
        query = what.where(Subscriber.status.in_(list(statuses)))
        if last is not None:
            query = query.where(Subscriber.id > last)
        query = query.order_by(Subscriber.id).limit(chunk_size)
        with store.session() as session:
            rows = list(session.execute(query).all() if light else session.scalars(query))
        if not rows:
            return
        yield rows
        last = rows[-1].id
        if len(rows) < chunk_size:
            return
