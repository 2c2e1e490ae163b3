"""Dumps into the store: each in one transaction, all of it or none of it. Any failure while
reading, parsing or storing one dump fails that dump alone: it is recorded with its error (the
log has the traceback) and the rest goes on."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import Connection, delete, insert
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from .. import clock
from ..errors import IngestError, StoreError
from ..store import Store
from .model import ParsedDump, printable_name
from .parse import parse_raw
from .reading import DEFAULT_MAX_BYTES, content_hash, decode_dump, gc_paused, read_bytes
from .report import DumpResult, FailedDump, IngestReport
from .write import DumpWriter, dumps_t, find_dump

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def expand_paths(paths: Iterable[Path], notes: list[str] | None = None) -> Iterator[Path]:
    """Files as given; folders walked in name order, skipping hidden files, .error notes and
    anything that is not a regular file (a FIFO would block the read forever), each with a
    note in ``notes``."""
    for path in paths:
        path = Path(path)
        if not path.is_dir():
            yield path
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith(".") or name.endswith(".error"):
                    continue
                found = Path(root) / name
                what = _not_regular(found)
                if what is None:
                    yield found
                elif notes is not None:
                    notes.append(f"{printable_name(found)}: skipped: {what}, not a dump file")


def _not_regular(path: Path) -> str | None:
    """What the path is when it is not a regular file (symlinks followed); None for a file
    or for a path that cannot be looked at (reading it says why)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a folder" if stat.S_ISDIR(mode) else "not a regular file"


def ingest_paths(
    store: Store,
    paths: Sequence[Path],
    *,
    listing_date: date | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> IngestReport:
    """Ingest files and folders; a failing dump is recorded and the rest goes on."""
    now = now or clock.now()
    report = IngestReport()
    files = list(expand_paths(paths, report.notes))
    for done, path in enumerate(files, 1):
        result = ingest_file(store, path, listing_date=listing_date, now=now, max_bytes=max_bytes)
        report.dumps.append(result)
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
    """One dump, all of it or none of it. Never raises for bad input, whatever goes wrong
    with it (a parser's RecursionError or MemoryError too); raises StoreError when the
    database itself is unreachable, since then no other dump can succeed either."""
    now = now or clock.now()
    name = printable_name(path)
    digest: list[str] = []  # set once the bytes are read: a failure is recorded against it
    try:
        try:
            with gc_paused():
                return _ingest_file(store, Path(path), name, listing_date, now, max_bytes, digest)
        except (StoreError, OperationalError):
            raise
        except Exception as exc:
            # not an IngestError: a case the parsers do not foresee, so the traceback is logged
            log.error("ingesting %s failed", name, exc_info=True)
            error = IngestError(
                f"digestbot could not read this dump ({type(exc).__name__}: {_short(exc)})",
                file=name,
                hint="The log has the traceback; report it with the file if you can. "
                "The other dumps go on.",
            )
            if digest:
                _record_failure(store, name, digest[0], None, error, now)
            return DumpResult(name, "failed", error=FailedDump.from_error(name, error))
    except OperationalError as exc:
        raise StoreError(
            f"cannot write to the store: {exc.orig}",
            hint="Check that the database is reachable, writable, and not full.",
        ) from None


def _short(exc: BaseException) -> str:
    text = printable_name(str(exc))
    return text if len(text) <= 200 else text[:200] + "..."


def _ingest_file(
    store: Store,
    path: Path,
    name: str,
    listing_date: date | None,
    now: datetime,
    max_bytes: int,
    digest_out: list[str],
) -> DumpResult:
    what = _not_regular(path)
    if what is not None and what != "a folder":
        # opening a FIFO would wait for a writer forever
        return DumpResult(name, "skipped", warnings=[f"{name}: skipped: {what}, not a dump file"])
    try:
        data, mtime = read_bytes(path, max_bytes=max_bytes)
    except IngestError as exc:
        return DumpResult(name, "failed", error=FailedDump.from_error(name, exc))
    digest = content_hash(data)
    digest_out.append(digest)
    with store.session() as session:
        done = find_dump(session.connection(), digest)
    if done is not None and done[1] == "ok":
        return DumpResult(name, "skipped", dump_id=done[0])
    try:
        raw = decode_dump(path, data, mtime, digest, max_bytes)
        del data  # parse_raw frees the text too; a big dump is held once, not thrice
        parsed = parse_raw(raw, listing_date=listing_date)
    except IngestError as exc:
        _record_failure(store, name, digest, None, exc, now)
        return DumpResult(name, "failed", error=FailedDump.from_error(name, exc))
    error: IngestError | None = None
    for attempt in (1, 2):
        try:
            with store.engine.begin() as conn:
                return _store_dump(conn, parsed, now)
        except IntegrityError as exc:
            # another worker stored the same paper or dump a moment ago: look again
            if attempt == 2:
                error = _refused(name, exc)
        except OperationalError:
            raise
        except DBAPIError as exc:
            # a value the database will not take (too long, bad encoding, a trigger):
            # this dump's fault, not the store's, so the others go on
            error = _refused(name, exc)
            break
    assert error is not None
    _record_failure(store, name, digest, parsed.format, error, now)
    return DumpResult(name, "failed", error=FailedDump.from_error(name, error))


def _store_dump(conn: Connection, parsed: ParsedDump, now: datetime) -> DumpResult:
    """A parsed dump's papers, in the caller's transaction."""
    result = DumpWriter(conn, parsed, now).write()
    if result.status == "skipped":
        return result
    log.info("%s: %d new, %d updated", result.file, len(result.new_ids), len(result.updated_ids))
    return result


def _record_failure(
    store: Store, name: str, digest: str, fmt: str | None, error: IngestError, now: datetime
) -> None:
    """A failed dump is remembered with its error; trying it again replaces the record."""
    with store.session() as session:
        conn = session.connection()
        conn.execute(delete(dumps_t).where(dumps_t.c.content_hash == digest))
        conn.execute(
            insert(dumps_t).values(
                content_hash=digest,
                file_name=Path(name).name[:500],
                format=fmt or "unknown",
                ingested_at=now,
                status="failed",
                error=printable_name(str(error) + (f"\nHint: {error.hint}" if error.hint else "")),
            )
        )


def _refused(name: str, exc: DBAPIError) -> IngestError:
    text = str(exc.orig).strip()
    reason = text.splitlines()[0] if text else type(exc.orig).__name__
    return IngestError(f"the database refused the dump: {reason}", file=name)
