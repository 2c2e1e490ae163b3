"""Parsed dumps into the store: one transaction per dump, bulk statements, no row loops
against the database."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

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
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from ..errors import IngestError, StoreError
from ..store import Dump, Paper, Sighting, Store
from .model import MERGED_FIELDS, ParsedDump, merge_fields, paper_id_for
from .parse import parse_raw
from .reading import DEFAULT_MAX_BYTES, content_hash, decode_dump, gc_paused, read_bytes
from .report import DumpResult, FailedDump, IngestReport

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
papers_t = Paper.__table__
dumps_t = Dump.__table__
sightings_t = Sighting.__table__
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


def expand_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """Files as given; folders walked in name order, skipping hidden files and .error notes."""
    for path in paths:
        path = Path(path)
        if not path.is_dir():
            yield path
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith(".") and not name.endswith(".error"):
                    yield Path(root) / name


def ingest_paths(
    store: Store,
    paths: Sequence[Path],
    *,
    listing_date: date | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    on_result: Callable[[Path, DumpResult], None] | None = None,
) -> IngestReport:
    """Ingest files and folders; a failing dump is recorded and the rest goes on."""
    now = now or datetime.now(UTC)
    files = list(expand_paths(paths))
    report = IngestReport()
    for done, path in enumerate(files, 1):
        result = ingest_file(store, path, listing_date=listing_date, now=now, max_bytes=max_bytes)
        report.add(result)
        if on_result is not None:
            on_result(path, result)
        if progress is not None:
            progress(done, len(files))
    return report


def ingest_file(
    store: Store,
    path: Path,
    *,
    listing_date: date | None = None,
    now: datetime | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> DumpResult:
    """One dump, all of it or none of it. Never raises for bad input; raises StoreError when
    the database itself is unreachable, since then no other dump can succeed either."""
    with gc_paused():
        return _ingest_file(store, Path(path), listing_date, now or datetime.now(UTC), max_bytes)


def _ingest_file(
    store: Store, path: Path, listing_date: date | None, now: datetime, max_bytes: int
) -> DumpResult:
    name = str(path)
    try:
        data, mtime = read_bytes(path, max_bytes=max_bytes)
    except IngestError as exc:
        return DumpResult(name, "failed", error=FailedDump.from_error(name, exc))
    digest = content_hash(data)
    try:
        with store.session() as session:
            done = _find_dump(session.connection(), digest)
        if done is not None and done[1] == "ok":
            return DumpResult(name, "skipped", dump_id=done[0])
        fmt: str | None = None
        try:
            raw = decode_dump(path, data, mtime, digest)
            del data  # parse_raw frees the text too; a big dump is held once, not thrice
            parsed = parse_raw(raw, listing_date=listing_date)
            fmt = parsed.format
        except IngestError as exc:
            _record_failure(store, path, digest, fmt, exc, now)
            return DumpResult(name, "failed", error=FailedDump.from_error(name, exc))
        for attempt in (1, 2):
            try:
                with store.session() as session:
                    return _store_dump(session.connection(), parsed, now)
            except IntegrityError as exc:
                # another worker stored the same paper or dump a moment ago: look again
                if attempt == 2:
                    error = _refused(path, exc)
            except OperationalError:
                raise
            except DBAPIError as exc:
                # a value the database will not take (too long, bad encoding, a trigger):
                # this dump's fault, not the store's, so the others go on
                error = _refused(path, exc)
                break
        _record_failure(store, path, digest, fmt, error, now)
        return DumpResult(name, "failed", error=FailedDump.from_error(name, error))
    except OperationalError as exc:
        raise StoreError(
            f"cannot write to the store: {exc.orig}",
            hint="Check that the database is reachable, writable, and not full.",
        ) from None


def _find_dump(conn: Connection, digest: str) -> tuple[int, str] | None:
    row = conn.execute(
        select(dumps_t.c.id, dumps_t.c.status).where(dumps_t.c.content_hash == digest)
    ).first()
    return (row[0], row[1]) if row else None


def _record_failure(
    store: Store, path: Path, digest: str, fmt: str | None, error: IngestError, now: datetime
) -> None:
    """A failed dump is remembered with its error; trying it again replaces the record."""
    with store.session() as session:
        conn = session.connection()
        conn.execute(delete(dumps_t).where(dumps_t.c.content_hash == digest))
        conn.execute(
            insert(dumps_t).values(
                content_hash=digest,
                file_name=path.name[:500],
                format=fmt or "unknown",
                ingested_at=now,
                status="failed",
                error=str(error) + (f"\nHint: {error.hint}" if error.hint else ""),
            )
        )


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(values), CHUNK):
        yield values[i : i + CHUNK]


def _stored(conn: Connection, parsed: ParsedDump) -> list[dict[str, Any]]:
    """The stored papers this dump may match, by title key or arXiv id."""
    rows: dict[str, dict[str, Any]] = {}
    keys = sorted({p.key for p in parsed.papers})
    arxiv = sorted({p.arxiv_id for p in parsed.papers if p.arxiv_id})
    names = ["id", "title_key", *("abstract_len" if n == "abstract" else n for n in MERGED_FIELDS)]
    for column, values in ((papers_t.c.title_key, keys), (papers_t.c.arxiv_id, arxiv)):
        for chunk in _chunks(values):
            for row in conn.execute(select(*_STORED).where(column.in_(chunk))):
                if row[0] not in rows:
                    rows[row[0]] = dict(zip(names, row, strict=True))
    return list(rows.values())


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _merge_stored(row: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """:func:`merge_fields` for a stored paper, known by its abstract's length and its
    JSON columns as stored: they are decoded only when the new listing brings a value."""
    abstract = fields["abstract"]
    # an empty list of links adds nothing, like a missing one
    new = {**fields, "abstract": None, "links": fields["links"] or None}
    for name in ("authors", "links"):
        if new[name] is not None and name not in row["_decoded"]:
            row[name] = _json(row[name])
            row["_decoded"].add(name)
    changes = merge_fields(row, new)
    if len(abstract) > row["abstract_len"]:
        changes["abstract"] = abstract
    return changes


def _store_dump(conn: Connection, parsed: ParsedDump, now: datetime) -> DumpResult:
    name = str(parsed.path)
    done = _find_dump(conn, parsed.content_hash)
    if done is not None and done[1] == "ok":
        return DumpResult(name, "skipped", dump_id=done[0])
    if done is not None:
        conn.execute(delete(dumps_t).where(dumps_t.c.id == done[0]))
    dump_id = conn.execute(
        insert(dumps_t).values(
            content_hash=parsed.content_hash,
            file_name=parsed.path.name[:500],
            format=parsed.format,
            listed_on=parsed.listed_on,
            ingested_at=now,
            entries=parsed.entries,
            status="ok",
        )
    ).inserted_primary_key[0]

    by_key: dict[str, list[dict[str, Any]]] = {}
    by_arxiv: dict[str, dict[str, Any]] = {}
    for row in _stored(conn, parsed):
        row["_decoded"] = set()
        row["_changed"] = set()
        by_key.setdefault(row["title_key"], []).append(row)
        if row["arxiv_id"]:
            by_arxiv[row["arxiv_id"]] = row

    listed_on = parsed.listed_on
    new_rows: list[dict[str, Any]] = []
    new_ids: set[str] = set()
    changed: dict[str, dict[str, Any]] = {}
    sightings: dict[str, tuple[Any, ...]] = {}
    for position, p in enumerate(parsed.papers, 1):
        row = by_arxiv.get(p.arxiv_id) if p.arxiv_id else None
        if row is None:
            for candidate in by_key.get(p.key, ()):
                # the same title under two different arXiv ids: two papers
                if not (p.arxiv_id and candidate["arxiv_id"]):
                    row = candidate
                    break
        fields: dict[str, Any] = {
            "arxiv_id": p.arxiv_id,
            "abstract": p.abstract,
            "authors": p.authors,
            "author_count": p.author_count,
            "organization": p.organization,
            "published_on": p.published_on,
            "listed_on": listed_on,
            "upvotes": p.upvotes,
            "comments": p.comments,
            "links": p.links,
            "github_url": p.github_url,
        }
        if row is None:
            pid = paper_id_for(p.arxiv_id, p.key)
            fields["id"], fields["title_key"], fields["title"] = pid, p.key, p.title
            row = fields
            new_rows.append(row)
            new_ids.add(pid)
            by_key.setdefault(p.key, []).append(row)
            if p.arxiv_id:
                by_arxiv[p.arxiv_id] = row
        else:
            stored = "_changed" in row
            changes = _merge_stored(row, fields) if stored else merge_fields(row, fields)
            if "arxiv_id" in changes and changes["arxiv_id"] in by_arxiv:
                del changes["arxiv_id"]  # that id already belongs to another stored paper
            if changes:
                row.update(changes)
                if stored:
                    row["_changed"].update(changes)
                    if "abstract" in changes:
                        row["abstract_len"] = len(changes["abstract"])
                    changed[row["id"]] = row
                if "arxiv_id" in changes:
                    by_arxiv[row["arxiv_id"]] = row
        if row["id"] not in sightings:
            sightings[row["id"]] = (row["id"], dump_id, position, listed_on, p.upvotes, p.comments)

    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        cache = conn.exec_driver_sql("PRAGMA cache_size").scalar()
        conn.exec_driver_sql(f"PRAGMA cache_size=-{_SQLITE_CACHE_KIB}")
    try:
        if new_rows:
            columns = ["id", "title_key", "title", *MERGED_FIELDS]
            # in key order: the primary key and title_key indexes grow at their ends
            # (a text-only paper's id is its key's prefix) instead of at random pages
            ordered = sorted(new_rows, key=itemgetter("id"))
            rows = [tuple(r[c] for c in columns) for r in ordered]
            _insert_many(conn, papers_t, [*columns, "first_seen_at", "updated_at"], rows, now, now)
        if changed:
            conn.execute(
                _UPDATE,
                [
                    {
                        "b_id": pid,
                        "b_updated_at": now,
                        **{n: row[n] if n in row["_changed"] else None for n in MERGED_FIELDS},
                    }
                    for pid, row in changed.items()
                ],
            )
        names = ["paper_id", "dump_id", "position", "listed_on", "upvotes", "comments"]
        _insert_many(conn, sightings_t, names, sorted(sightings.values()))
        conn.execute(
            update(dumps_t)
            .where(dumps_t.c.id == dump_id)
            .values(papers_new=len(new_rows), papers_updated=len(changed))
        )
    finally:
        if sqlite:
            conn.exec_driver_sql(f"PRAGMA cache_size={int(cache)}")
    log.info("%s: %d new, %d updated", parsed.path, len(new_rows), len(changed))
    return DumpResult(
        name,
        "ok",
        format=parsed.format,
        listed_on=listed_on,
        entries=parsed.entries,
        papers=len(parsed.papers),
        new_ids=[r["id"] for r in new_rows],
        updated_ids=list(changed),
        dump_id=dump_id,
        warnings=list(parsed.warnings),
    )


def _insert_many(
    conn: Connection,
    table: Table,
    names: list[str],
    rows: list[tuple[Any, ...]],
    *extra: Any,
) -> None:
    """A bulk INSERT of plain tuples (``extra`` values end every row). On SQLite the rows go
    to the driver's executemany with each column's bind processor applied column by
    column: SQLAlchemy's per-row parameter handling would otherwise cost more than the
    insert itself. Other backends batch through SQLAlchemy's insertmanyvalues, which is
    already fast."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        conn.execute(insert(table), [dict(zip(names, (*r, *extra), strict=True)) for r in rows])
        return
    compiled = insert(table).compile(dialect=conn.dialect, column_keys=names)
    order = list(compiled.positiontup or names)
    columns: list[Any] = list(zip(*rows, strict=True)) + [(v,) * len(rows) for v in extra]
    by_name = dict(zip(names, columns, strict=True))
    out = []
    for name in order:
        values = by_name[name]
        process = table.c[name].type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        if process is not None:
            values = _process_column(values, process)
        out.append(values)
    conn.exec_driver_sql(compiled.string, list(zip(*out, strict=True)))


def _process_column(values: Sequence[Any], process: Callable[[Any], Any]) -> list[Any]:
    """Apply a bind processor once per distinct value: a dump's rows share their
    timestamps, listing date and most publication dates, and most link lists are empty."""
    cache: dict[Any, Any] = {}
    out = []
    for value in values:
        key = tuple(value) if value.__class__ is list else value
        try:
            out.append(cache[key])
        except KeyError:
            out.append(cache.setdefault(key, process(value)))
    return out


def _refused(path: Path, exc: DBAPIError) -> IngestError:
    text = str(exc.orig).strip()
    reason = text.splitlines()[0] if text else type(exc.orig).__name__
    return IngestError(f"the database refused the dump: {reason}", file=path)
