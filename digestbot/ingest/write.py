"""Writing one parsed dump into the store: bulk statements, no row loops against the database.

:class:`DumpWriter` takes a dump's papers in file order, inside one transaction: their stored
matches are read, the new papers and sightings inserted, then the changes to stored papers
written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Connection,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from ..store import Dump, Paper, Sighting
from ..store.bulk import insert_many, process_column
from .model import (
    MERGED_FIELDS,
    ParsedDump,
    ParsedPaper,
    merge_fields,
    merged_values,
    paper_id_for,
    printable_name,
)
from .report import DumpResult

papers_t = cast(Table, Paper.__table__)
dumps_t = cast(Table, Dump.__table__)
sightings_t = cast(Table, Sighting.__table__)
CHUNK = 2000  # keys per IN (...) query: far below every backend's parameter limit
# what a stored paper needs for merging: the abstract's length, not its text (the longer
# abstract wins, so a 100,000-paper dump seen again does not read 170 MB back)
_STORED = [
    papers_t.c.id,
    papers_t.c.title_key,
    *(
        func.length(papers_t.c.abstract).label("abstract_len")
        if name == "abstract"
        # JSON as the backend returns it: decoded only when a merge needs the value
        else type_coerce(papers_t.c[name], Text)
        if name in ("authors", "links")
        else papers_t.c[name]
        for name in MERGED_FIELDS
    ),
]
# one statement each, its IN list expanded when run: not 2,000 bound parameters built and
# compiled per query
_MATCHING = {
    column.name: select(*_STORED).where(column.in_(bindparam("values", expanding=True)))
    for column in (papers_t.c.title_key, papers_t.c.arxiv_id)
}
_SQLITE = sqlite_dialect()
_SQLITE_STORED = str(select(*_STORED).compile(dialect=_SQLITE))
_SQLITE_RESULT = {
    i: process
    for i, column in enumerate(_STORED)
    if (process := column.type.dialect_impl(_SQLITE).result_processor(_SQLITE, None))
}
_STORED_NAMES = [
    "id",
    "title_key",
    *("abstract_len" if n == "abstract" else n for n in MERGED_FIELDS),
]
_NEW_COLUMNS = ["id", "title_key", "title", *MERGED_FIELDS]
_NEW_ROW = itemgetter(*_NEW_COLUMNS)
_ID = itemgetter("id")
_FIRST = itemgetter(0)
_SIGHTING_COLUMNS = ["paper_id", "dump_id", "position", "listed_on", "upvotes", "comments"]


def _bind_type(name: str) -> Any:
    # None must reach the database as NULL, not as the JSON text 'null'
    column_type = papers_t.c[name].type
    return JSON(none_as_null=True) if isinstance(column_type, JSON) else column_type


# only the changed fields are given; NULL keeps the stored value (a merge never sets a
# field to NULL), so one statement serves every row and untouched text is not rewritten
_UPDATE = (
    update(papers_t)
    .where(papers_t.c.id == bindparam("b_id"))
    .values(
        {
            **{
                papers_t.c[n]: func.coalesce(bindparam(n, type_=_bind_type(n)), papers_t.c[n])
                for n in MERGED_FIELDS
            },
            papers_t.c.updated_at: bindparam("b_updated_at", type_=papers_t.c.updated_at.type),
        }
    )
)
# SQLite page cache for one dump's transaction (KiB): big enough that index and table
# pages are not spilled to the WAL and written again before the commit
_SQLITE_CACHE_KIB = 64 * 1024


def find_dump(conn: Connection, digest: str) -> tuple[int, str] | None:
    row = conn.execute(
        select(dumps_t.c.id, dumps_t.c.status).where(dumps_t.c.content_hash == digest)
    ).first()
    return (row[0], row[1]) if row else None


def _merge_stored(row: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """:func:`merge_fields` for a stored paper, known by its abstract's length and its
    JSON columns as stored: they are decoded only when the new listing brings a value."""
    abstract = fields["abstract"]
    # an empty list of links adds nothing, like a missing one
    new = {**fields, "abstract": None, "links": fields["links"] or None}
    for name in ("authors", "links"):
        if new[name] is not None and name not in row["_decoded"]:
            stored = row[name]
            row[name] = json.loads(stored) if isinstance(stored, str) else stored
            row["_decoded"].add(name)
    changes = merge_fields(row, new)
    if len(abstract) > row["abstract_len"]:
        changes["abstract"] = abstract
    return changes


class DumpWriter:
    """One parsed dump into the store, in the caller's transaction."""

    def __init__(self, conn: Connection, dump: ParsedDump, now: datetime) -> None:
        self.conn, self.dump, self.now = conn, dump, now
        self.by_key: dict[str, list[dict[str, Any]]] = {}
        self.by_arxiv: dict[str, dict[str, Any]] = {}
        self.known: set[str] = set()  # ids of the stored papers read
        self.changed: dict[str, dict[str, Any]] = {}  # stored papers this dump improves

    def write(self) -> DumpResult:
        """The dump's papers and record; a skipped :class:`DumpResult` if it is stored
        already."""
        conn, dump = self.conn, self.dump
        done = find_dump(conn, dump.content_hash)
        if done is not None and done[1] == "ok":
            return DumpResult(printable_name(dump.path), "skipped", dump_id=done[0])
        if done is not None:
            conn.execute(delete(dumps_t).where(dumps_t.c.id == done[0]))
        inserted = conn.execute(
            insert(dumps_t).values(
                content_hash=dump.content_hash,
                file_name=printable_name(dump.path.name)[:500],
                format=dump.format,
                listed_on=dump.listed_on,
                ingested_at=self.now,
                entries=0,
                status="ok",
            )
        ).inserted_primary_key
        assert inserted is not None
        dump_id = inserted[0]
        cache = None
        if conn.dialect.name == "sqlite":
            cache = conn.exec_driver_sql("PRAGMA cache_size").scalar()
            conn.exec_driver_sql(f"PRAGMA cache_size=-{_SQLITE_CACHE_KIB}")
        try:
            new_ids = self._add(dump_id)
            self._update_changed()
        finally:
            if cache is not None:  # SQLite's page cache size back, also after a failure
                conn.exec_driver_sql(f"PRAGMA cache_size={int(cache)}")
        conn.execute(
            update(dumps_t)
            .where(dumps_t.c.id == dump_id)
            .values(entries=dump.entries, papers_new=len(new_ids), papers_updated=len(self.changed))
        )
        return DumpResult(
            printable_name(dump.path),
            "ok",
            format=dump.format,
            listed_on=dump.listed_on,
            entries=dump.entries,
            papers=len(dump.papers),
            new_ids=new_ids,
            updated_ids=list(self.changed),
            dump_id=dump_id,
            warnings=list(dump.warnings),
        )

    def _read_stored(self, papers: Sequence[ParsedPaper]) -> None:
        """The stored papers these may match, by title key or arXiv id."""
        keys = sorted({p.key for p in papers})
        arxiv = sorted({p.arxiv_id for p in papers if p.arxiv_id})
        for column, values in (("title_key", keys), ("arxiv_id", arxiv)):
            for i in range(0, len(values), CHUNK):
                for found in self._matching(column, values[i : i + CHUNK]):
                    if found[0] in self.known:
                        continue
                    self.known.add(found[0])
                    row = dict(zip(_STORED_NAMES, found, strict=True))
                    row["_decoded"] = set()
                    row["_changed"] = set()
                    self.by_key.setdefault(row["title_key"], []).append(row)
                    if row["arxiv_id"]:
                        self.by_arxiv[row["arxiv_id"]] = row

    def _matching(self, column: str, values: list[str]) -> Iterable[Sequence[Any]]:
        """The stored papers whose ``column`` is one of ``values``, as :data:`_STORED`."""
        if self.conn.dialect.name != "sqlite":
            return self.conn.execute(_MATCHING[column], {"values": values})
        # SQLite: the driver's rows as they come (building SQLAlchemy rows and expanding
        # the IN list cost more than the query), the date columns converted as SQLAlchemy
        # would, once per distinct value
        cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        marks = ",".join("?" * len(values))
        rows = cursor.execute(f"{_SQLITE_STORED} WHERE {column} IN ({marks})", values).fetchall()
        cursor.close()
        if not rows:
            return rows
        columns: list[Any] = list(zip(*rows, strict=True))
        for i, process in _SQLITE_RESULT.items():
            columns[i] = process_column(columns[i], process, False)
        return zip(*columns, strict=True)

    def _add(self, dump_id: int) -> list[str]:
        """The dump's papers, in file order, each paper once; the new papers' ids."""
        papers, listed_on = self.dump.papers, self.dump.listed_on
        self._read_stored(papers)
        by_key, by_arxiv = self.by_key, self.by_arxiv
        sighted: set[str] = set()
        new_rows: list[dict[str, Any]] = []
        sightings: list[tuple[Any, ...]] = []
        for position, p in enumerate(papers, 1):
            key, arxiv_id = p.key, p.arxiv_id
            row = by_arxiv.get(arxiv_id) if arxiv_id else None
            if row is None and (candidates := by_key.get(key)):
                for candidate in candidates:
                    # the same title under two different arXiv ids: two papers
                    if not (arxiv_id and candidate["arxiv_id"]):
                        row = candidate
                        break
            fields = merged_values(p, listed_on)
            if row is None:
                pid = paper_id_for(arxiv_id, key)
                fields["id"], fields["title_key"], fields["title"] = pid, key, p.title
                row = fields
                new_rows.append(row)
                if candidates:
                    candidates.append(row)
                else:
                    by_key[key] = [row]
                if arxiv_id:
                    by_arxiv[arxiv_id] = row
            else:
                self._merge(row, fields)
                pid = row["id"]
            if pid not in sighted:
                sighted.add(pid)
                sightings.append((pid, dump_id, position, listed_on, p.upvotes, p.comments))
        if new_rows:
            # in key order: the primary key and title_key indexes grow at their ends
            # (a text-only paper's id is its key's prefix) instead of at random pages
            rows = list(map(_NEW_ROW, sorted(new_rows, key=_ID)))
            columns = [*_NEW_COLUMNS, "first_seen_at", "updated_at"]
            insert_many(self.conn, papers_t, columns, rows, self.now, self.now)
        sightings.sort(key=_FIRST)  # by paper id: each is in one sighting of the dump at most
        insert_many(self.conn, sightings_t, _SIGHTING_COLUMNS, sightings)
        return list(map(_ID, new_rows))

    def _merge(self, row: dict[str, Any], fields: dict[str, Any]) -> None:
        """A paper seen before (stored, or new in this dump) improved by another listing."""
        stored = "_changed" in row
        changes = _merge_stored(row, fields) if stored else merge_fields(row, fields)
        if "arxiv_id" in changes and changes["arxiv_id"] in self.by_arxiv:
            del changes["arxiv_id"]  # that id already belongs to another stored paper
        if not changes:
            return
        row.update(changes)
        if stored:
            row["_changed"].update(changes)
            if "abstract" in changes:
                row["abstract_len"] = len(cast(str, changes["abstract"]))
            self.changed[row["id"]] = row
        if "arxiv_id" in changes:
            self.by_arxiv[row["arxiv_id"]] = row

    def _update_changed(self) -> None:
        """The stored papers' changes, only the changed fields of each."""
        if self.changed:
            self.conn.execute(
                _UPDATE,
                [
                    {
                        "b_id": pid,
                        "b_updated_at": self.now,
                        **{n: row[n] if n in row["_changed"] else None for n in MERGED_FIELDS},
                    }
                    for pid, row in self.changed.items()
                ],
            )
