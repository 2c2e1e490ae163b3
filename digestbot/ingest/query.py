"""Reading back what ingestion stored, for `digestbot papers` and the demo."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import func, select

from ..store import Dump, Paper, Sighting, Store

# what `digestbot papers` shows of a paper: every column but the dedupe key and the time of
# the last change, in the table's order
_SHOWN = [c.key for c in Paper.__table__.columns if c.key not in ("title_key", "updated_at")]


def list_papers(
    store: Store, *, since: date | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Papers newest listing first, each with the dumps that listed it."""
    query = select(Paper).order_by(Paper.listed_on.desc(), Paper.first_seen_at.desc(), Paper.id)
    if since is not None:
        query = query.where(Paper.listed_on >= since)
    if limit is not None:
        query = query.limit(limit)
    with store.session() as session:
        papers = session.scalars(query).all()
        ids = [p.id for p in papers]
        seen: dict[str, list[dict[str, Any]]] = {}
        for i in range(0, len(ids), 2000):
            rows = session.execute(
                select(Sighting.paper_id, Dump.file_name, Sighting.listed_on, Sighting.position)
                .join(Dump, Dump.id == Sighting.dump_id)
                .where(Sighting.paper_id.in_(ids[i : i + 2000]))
                .order_by(Sighting.listed_on, Dump.id)
            )
            for pid, name, listed_on, position in rows:
                seen.setdefault(pid, []).append(
                    {"dump": name, "listed_on": listed_on, "position": position}
                )
    return [
        {**{name: getattr(p, name) for name in _SHOWN}, "sightings": seen.get(p.id, [])}
        for p in papers
    ]


def store_counts(store: Store) -> dict[str, int]:
    """How many papers, dumps and failed dumps the store holds."""
    count = select(func.count())
    with store.session() as session:
        return {
            "papers": session.scalar(count.select_from(Paper)) or 0,
            "dumps": session.scalar(count.select_from(Dump).where(Dump.status == "ok")) or 0,
            "failed_dumps": session.scalar(count.select_from(Dump).where(Dump.status == "failed"))
            or 0,
        }
