"""Dumps into the store: each in one transaction, all of it or none of it; a bad dump is
recorded with its error and the rest goes on. A big dump is parsed in a child process while
this one writes it (:mod:`.stream`, :mod:`.write`)."""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import Connection, delete, insert
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from .. import clock
from ..errors import IngestError, StoreError
from ..store import Store
from .model import ParsedDump, ParsedPaper
from .parse import parse_raw
from .reading import DEFAULT_MAX_BYTES, MB, content_hash, decode_dump, gc_paused, read_bytes
from .report import DumpResult, FailedDump, IngestReport
from .stream import ParseStream, Repeats, can_fork
from .write import DumpWriter, dumps_t, find_dump

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
# dumps at least this big are parsed in a child process while this one writes: below it,
# starting the child costs more than the overlap saves (a day's page is ~100 kB)
STREAM_MIN_BYTES = 4 * MB


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
    now = now or clock.now()
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
        return _ingest_file(store, Path(path), listing_date, now or clock.now(), max_bytes)


def _ingest_file(
    store: Store, path: Path, listing_date: date | None, now: datetime, max_bytes: int
) -> DumpResult:
    name = str(path)
    try:
        data, mtime = read_bytes(path, max_bytes=max_bytes)
    except IngestError as exc:
        return DumpResult(name, "failed", error=FailedDump.from_error(name, exc))
    stream: ParseStream | None = None
    try:
        if len(data) >= STREAM_MIN_BYTES and can_fork():
            # the child parses while this process hashes the bytes and looks the dump up
            stream = ParseStream(path, data, mtime, listing_date)
        digest = content_hash(data)
        with store.session() as session:
            done = find_dump(session.connection(), digest)
        if done is not None and done[1] == "ok":
            return DumpResult(name, "skipped", dump_id=done[0])
        attempts = (1, 2)
        error: IngestError | None = None
        try:
            if stream is not None:
                stream.content_hash = digest
                del data  # the child has the bytes; a big dump is not held twice here
                try:
                    with store.bulk_transaction() as conn:
                        return _store_streamed(conn, stream, now)
                except Repeats:
                    pass  # written again below, whole
                except IntegrityError:
                    attempts = (2,)  # that was the first attempt
                except OperationalError:
                    raise
                except DBAPIError as exc:
                    error = _refused(path, exc)
                parsed = stream.whole()
            else:
                raw = decode_dump(path, data, mtime, digest)
                del data  # parse_raw frees the text too; a big dump is held once, not thrice
                parsed = parse_raw(raw, listing_date=listing_date)
        except IngestError as exc:
            _record_failure(store, path, digest, None, exc, now)
            return DumpResult(name, "failed", error=FailedDump.from_error(name, exc))
        for attempt in attempts if error is None else ():
            try:
                with store.bulk_transaction() as conn:
                    return _store_dump(conn, parsed, now)
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
        assert error is not None
        _record_failure(store, path, digest, parsed.format, error, now)
        return DumpResult(name, "failed", error=FailedDump.from_error(name, error))
    except OperationalError as exc:
        raise StoreError(
            f"cannot write to the store: {exc.orig}",
            hint="Check that the database is reachable, writable, and not full.",
        ) from None
    finally:
        if stream is not None:
            stream.close()


def _write(
    conn: Connection,
    source: ParsedDump | ParseStream,
    now: datetime,
    batches: Iterable[Sequence[ParsedPaper]],
    totals: Callable[[], tuple[int, int, list[str]]],
) -> DumpResult:
    """A dump's papers, batch by batch, in the caller's transaction; ``totals`` gives its
    entries, papers and warnings once every batch is written."""
    assert source.format is not None and source.listed_on is not None
    writer = DumpWriter(
        conn, source.path, source.format, source.listed_on, source.content_hash, now
    )
    try:
        skipped = writer.begin()
        if skipped is not None:
            return skipped
        for papers in batches:
            writer.add(papers)
        result = writer.finish(*totals())
    finally:
        writer.close()
    log.info("%s: %d new, %d updated", source.path, len(result.new_ids), len(result.updated_ids))
    return result


def _store_dump(conn: Connection, parsed: ParsedDump, now: datetime) -> DumpResult:
    return _write(
        conn,
        parsed,
        now,
        [parsed.papers],
        lambda: (parsed.entries, len(parsed.papers), parsed.warnings),
    )


def _store_streamed(conn: Connection, stream: ParseStream, now: datetime) -> DumpResult:
    """A dump written batch by batch as the child parses it; raises :class:`Repeats` when
    the dump lists a paper twice (then it is written whole)."""
    first = stream.first()
    return _write(
        conn,
        stream,
        now,
        itertools.chain([first], stream.batches()),
        lambda: (stream.entries, len(stream.received), stream.warnings),
    )


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


def _refused(path: Path, exc: DBAPIError) -> IngestError:
    text = str(exc.orig).strip()
    reason = text.splitlines()[0] if text else type(exc.orig).__name__
    return IngestError(f"the database refused the dump: {reason}", file=path)
