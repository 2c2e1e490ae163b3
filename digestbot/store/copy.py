"""Copying a whole store to another database: SQLite to PostgreSQL and back.

Every table is copied row for row, ids and tokens included, so the feed, preference and
unsubscribe links already sent keep working, and the history (digests, sent papers) keeps a
run on the copy from sending anyone what they already had. The destination must be
migrated to the same schema and empty; the copy is one transaction there, so a failed or
interrupted copy leaves it empty, ready for the next try.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection, Integer, LargeBinary, Table, func, select, text

from ..config import mask_url_password
from ..errors import StoreError
from .db import RunLock, Store
from .models import Base

# rows per INSERT batch; digest messages are ~56 KB each, so they go in smaller ones
BATCH_ROWS = 2000
BATCH_BYTES_ROWS = 100

Progress = Callable[[str, int, int], None]


@dataclass
class TableCount:
    table: str
    source: int
    copied: int
    destination: int

    @property
    def ok(self) -> bool:
        return self.source == self.copied == self.destination


@dataclass
class CopyReport:
    source: str
    destination: str
    tables: list[TableCount] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(t.copied for t in self.tables)


def tables() -> list[Table]:
    """Every table of the schema, parents before children (foreign keys hold throughout)."""
    return list(Base.metadata.sorted_tables)


def copy_store(
    source: Store, destination: Store, *, progress: Progress | None = None
) -> CopyReport:
    """Copy every row of ``source`` into the empty ``destination``, checking the counts.

    Both stores must be at the same schema revision. Holds the run lock on both, so no
    digest run changes either meanwhile; stop the web front and `digestbot send` workers
    too, or the final count check finds the source changed and nothing is kept.
    """
    report = CopyReport(_name(source), _name(destination))
    if report.source == report.destination:
        raise StoreError(
            "the source and the destination are the same database",
            hint="Give the new store's address as DST_URL.",
        )
    with RunLock(source, name="run"), RunLock(destination, name="run"):
        with source.engine.connect() as src, destination.engine.begin() as dst:
            _refuse_non_empty(dst, report.destination)
            for table in tables():
                total = _count(src, table)
                copied = _copy_table(src, dst, table, total, progress)
                report.tables.append(
                    TableCount(table.name, _count(src, table), copied, _count(dst, table))
                )
            bad = [t for t in report.tables if not t.ok]
            if bad:
                lines = ", ".join(
                    f"{t.table}: {t.source} in the source, {t.copied} read, {t.destination} written"
                    for t in bad
                )
                # leaving the `with` by an exception rolls the destination back
                raise StoreError(
                    f"the counts do not match ({lines}); nothing was kept",
                    hint="Stop everything that writes to the source (the web front, "
                    "timers, `digestbot send`) and copy again.",
                )
            if dst.dialect.name == "postgresql":
                _advance_sequences(dst)
    return report


def _name(store: Store) -> str:
    return mask_url_password(store.engine.url.render_as_string(hide_password=False))


def _count(conn: Connection, table: Table) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _refuse_non_empty(dst: Connection, where: str) -> None:
    filled = [(t.name, n) for t in tables() if (n := _count(dst, t))]
    if filled:
        shown = ", ".join(f"{name} ({n} rows)" for name, n in filled)
        raise StoreError(
            f"the destination {where} is not empty: {shown}",
            hint="Copy into a new, empty store: create it with `digestbot db upgrade --db "
            "DST_URL` (or drop and recreate the database) and run the copy again.",
        )


def _copy_table(
    src: Connection, dst: Connection, table: Table, total: int, progress: Progress | None
) -> int:
    batch = (
        BATCH_BYTES_ROWS
        if any(isinstance(c.type, LargeBinary) for c in table.columns)
        else BATCH_ROWS
    )
    order = list(table.primary_key.columns)
    result = src.execution_options(stream_results=True, yield_per=batch).execute(
        select(table).order_by(*order)
    )
    done = 0
    if progress is not None:
        progress(table.name, 0, total)
    for rows in result.partitions(batch):
        dst.execute(table.insert(), [row._asdict() for row in rows])
        done += len(rows)
        if progress is not None:
            progress(table.name, done, max(total, done))
    return done


def _advance_sequences(dst: Connection) -> None:
    """Ids were copied as they were: move each id sequence past the highest one."""
    for table in tables():
        keys = list(table.primary_key.columns)
        if len(keys) != 1 or not isinstance(keys[0].type, Integer):
            continue
        column = keys[0].name
        sequence = dst.execute(
            text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": column}
        ).scalar()
        if sequence is None:
            continue
        dst.execute(
            text(
                f'SELECT setval(:s, COALESCE((SELECT MAX("{column}") FROM "{table.name}"), 1), '
                f'(SELECT MAX("{column}") FROM "{table.name}") IS NOT NULL)'
            ),
            {"s": sequence},
        )
