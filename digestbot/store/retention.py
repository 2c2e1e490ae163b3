"""Bounded history: what is older than the retention period goes.

A digest's message bytes go as soon as they cannot be sent any more (see
``deliver/results.py``); its row and papers stay for history, feeds and "already sent"
until they pass ``store.retention_days``. Then the finished digests (sent, failed, feed
only: never one still waiting to be sent), with their papers and any bytes left, and spent
confirmation tokens are deleted, a chunk at a time so no transaction holds the write lock
for long.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from .db import Store
from .models import Digest, DigestItem, DigestMessage, UsedToken

FINISHED = ("sent", "failed", "feed_only")
CHUNK = 5000


@dataclass
class Pruned:
    digests: int = 0
    used_tokens: int = 0


def prune(store: Store, before: datetime) -> Pruned:
    """Delete history older than ``before``; returns what went."""
    pruned = Pruned()
    while True:
        with store.session() as s:
            ids = list(
                s.scalars(
                    select(Digest.id)
                    .where(Digest.created_at < before, Digest.state.in_(FINISHED))
                    .limit(CHUNK)
                )
            )
            if not ids:
                break
            # explicit, not left to ON DELETE CASCADE: a SQLite connection opened without
            # foreign keys would leave the rows behind
            s.execute(delete(DigestItem).where(DigestItem.digest_id.in_(ids)))
            s.execute(delete(DigestMessage).where(DigestMessage.digest_id.in_(ids)))
            s.execute(delete(Digest).where(Digest.id.in_(ids)))
            pruned.digests += len(ids)
    with store.session() as s:
        result = s.execute(delete(UsedToken).where(UsedToken.used_at < before))
        pruned.used_tokens = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if pruned.digests:
        store.analyze("digests", "digest_items", "digest_messages", vacuum=True)
    return pruned


__all__ = ["Pruned", "prune"]
