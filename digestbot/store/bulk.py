"""Many rows into one table at once, through the driver, not row by row through SQLAlchemy,
whose per-row parameter handling would cost more than the insert itself: on SQLite as
INSERTs of many rows each, on PostgreSQL as a COPY (a table of bytes: as an executemany
of binary parameters). A dump's papers (ingest) and a batch's digests' messages and items
(the outbox) go in this way."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from itertools import chain
from operator import is_, itemgetter
from typing import Any

from sqlalchemy import JSON, Connection, LargeBinary, Table, insert
from sqlalchemy.exc import DBAPIError

_ROWS_PER_INSERT = 50
_MAX_PARAMETERS = 999  # the lowest limit of any SQLite


def insert_many(
    conn: Connection,
    table: Table,
    names: list[str],
    rows: list[tuple[Any, ...]],
    *extra: Any,
) -> None:
    """A bulk INSERT of plain tuples (``extra`` values end every row), each column's bind
    processor applied column by column. On SQLite the rows go to the driver's executemany
    with NULLs written into the statement (see :func:`_by_nulls`); on PostgreSQL through
    COPY (:func:`_copy`), or for a table of bytes SQLAlchemy's executemany."""
    if not rows:
        return
    if conn.dialect.name == "postgresql" and any(
        isinstance(table.c[name].type, LargeBinary) for name in names
    ):
        # bytes (messages) go faster as binary parameters than escaped into COPY's text
        # format: 69 ms against 23 ms for a batch's 100 messages of 60 KB
        conn.execute(insert(table), [dict(zip(names, (*r, *extra), strict=True)) for r in rows])
        return
    columns: list[Any] = list(zip(*rows, strict=True)) + [(v,) for v in extra]
    out = []
    for name, values in zip(names, columns, strict=True):
        column_type = table.c[name].type
        process = column_type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        if process is None:
            pass
        elif isinstance(column_type, LargeBinary):
            # messages are all different: hashing them to share the work would cost more
            values = list(map(process, values))
        else:
            values = process_column(values, process, isinstance(column_type, JSON))
        if len(values) != len(rows):  # an extra value, the same in every row
            values = values * len(rows)
        out.append(values)
    quote = conn.dialect.identifier_preparer.quote
    if conn.dialect.name == "postgresql":
        _copy(conn, quote(table.name), list(map(quote, names)), out)
        return
    head = f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, names))}) VALUES "
    for nulls, group in _by_nulls(out):
        marks = "(" + ", ".join("NULL" if j in nulls else "?" for j in range(len(out))) + ")"
        bound = len(out) - len(nulls)
        keep = itemgetter(*(j for j in range(len(out)) if j not in nulls))
        params = list(map(keep, group)) if bound > 1 else [(keep(r),) for r in group]
        # many rows per statement: the driver's per-statement step and reset cost as much
        # as binding a row; within every SQLite's limit of 999 parameters
        per = max(1, min(_ROWS_PER_INSERT, _MAX_PARAMETERS // bound))
        whole = len(params) - len(params) % per
        if whole:
            flat = [tuple(chain.from_iterable(params[i : i + per])) for i in range(0, whole, per)]
            conn.exec_driver_sql(head + ", ".join([marks] * per), flat)
        if whole < len(params):
            conn.exec_driver_sql(head + marks, params[whole:])


def _copy(conn: Connection, table: str, names: list[str], columns: list[Sequence[Any]]) -> None:
    """PostgreSQL: the rows through COPY, in the connection's transaction (psycopg's
    ``Cursor.copy``). An executemany of INSERTs is one statement a row for the server to
    parse, plan and run: a 100,000-reader run's two million digest items took half a
    minute more than on SQLite that way."""
    raw = conn.connection.driver_connection
    assert raw is not None
    sql = f"COPY {table} ({', '.join(names)}) FROM STDIN"
    try:
        with raw.cursor() as cursor, cursor.copy(sql) as copy:
            for row in zip(*columns, strict=True):
                copy.write_row(row)
    except conn.dialect.loaded_dbapi.Error as exc:
        # as SQLAlchemy raises it for a statement it runs (IntegrityError, OperationalError
        # ...), so callers see one kind of error whichever way the rows went
        raise DBAPIError.instance(
            sql, None, exc, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
        ) from exc


def _by_nulls(columns: list[Sequence[Any]]) -> Iterator[tuple[set[int], list[tuple[Any, ...]]]]:
    """The rows grouped by which columns are NULL, each group in the rows' order. A NULL
    goes into the statement as a literal: the sqlite3 driver looks each None up in its
    adapters (a microsecond each, more than the rest of the row's binding)."""
    n = len(columns[0])
    nulls = {j for j, column in enumerate(columns) if column.count(None) == n}
    mixed = [j for j, column in enumerate(columns) if 0 < column.count(None) < n]
    rows = list(zip(*columns, strict=True))
    if not mixed:
        yield nulls, rows
        return
    is_none = partial(is_, None)
    groups: dict[tuple[bool, ...], list[tuple[Any, ...]]] = {}
    keys = zip(*(map(is_none, columns[j]) for j in mixed), strict=True)
    for key, row in zip(keys, rows, strict=True):
        try:
            groups[key].append(row)
        except KeyError:
            groups[key] = [row]
    for key, group in groups.items():
        yield nulls | {j for j, null in zip(mixed, key, strict=True) if null}, group


def process_column(values: Sequence[Any], process: Callable[[Any], Any], lists: bool) -> list[Any]:
    """Apply a bind processor once per distinct value: a dump's rows share their listing
    date and most publication dates, and most link lists are empty. The lookups run in C.
    ``lists``: a JSON column, its lists keyed by their items."""
    keys: Sequence[Any] = values
    if lists:
        keys = [tuple(v) if v.__class__ is list else v for v in values]
    try:
        distinct = dict(zip(keys, values, strict=True))
    except TypeError:  # unhashable values (JSON objects): each processed on its own
        return list(map(process, values))
    processed = {key: process(value) for key, value in distinct.items()}
    return list(map(processed.__getitem__, keys))
