"""The inbox folder: new dumps land there; each handled file moves to processed/ or, with
a ``.error`` note beside it, to failed/."""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path

from .. import clock
from ..errors import IngestError
from ..files import write_atomic
from ..store import Store
from .load import Progress, ingest_file
from .model import printable_name
from .reading import DEFAULT_MAX_BYTES
from .report import DumpResult, FailedDump, IngestReport

PROCESSED = "processed"
FAILED = "failed"
# files still being written: tools that write then rename use names like these
_PARTIAL = (".part", ".partial", ".tmp", ".crdownload", ".download", ".error")


def _free_name(folder: Path, name: str) -> Path:
    """A name in folder not taken yet: the same dump name may arrive on many days."""
    target = folder / name
    n = 1
    while target.exists() or target.with_name(target.name + ".error").exists():
        target = folder / f"{name}.{n}"
        n += 1
    return target


def file_away(path: Path, result: DumpResult) -> Path:
    """Move a handled file out of the inbox; a failed one gets a note saying why."""
    folder = path.parent / (FAILED if result.status == "failed" else PROCESSED)
    folder.mkdir(exist_ok=True)
    target = _free_name(folder, path.name)
    if result.error is not None:
        note = f"{result.error}\n"
        if result.error.hint:
            note += f"Hint: {result.error.hint}\n"
        write_atomic(target.with_name(target.name + ".error"), note)
    os.replace(path, target)
    return target


def ingest_inbox(
    store: Store,
    inbox: Path,
    *,
    listing_date: date | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> IngestReport:
    """Ingest every new file in the inbox and move each where it belongs."""
    now = now or clock.now()
    inbox = Path(inbox)
    if not inbox.is_dir():
        raise IngestError(
            "the inbox folder does not exist",
            file=inbox,
            field="ingest.inbox",
            hint=f"Create it (mkdir -p {inbox}) or point ingest.inbox at the right folder.",
        )
    report = IngestReport()
    files = []
    for path in sorted(inbox.iterdir()):
        if path.name.startswith(".") or path.name.endswith(_PARTIAL):
            continue
        if path.is_file():
            files.append(path)
        elif not path.is_dir():
            # a FIFO would block the read; it stays where it is, said once per run
            report.notes.append(f"{printable_name(path)}: skipped: not a regular file")
    for done, path in enumerate(files, 1):
        result = ingest_file(store, path, listing_date=listing_date, now=now, max_bytes=max_bytes)
        try:
            file_away(path, result)
        except OSError as exc:
            # the dump is in the store (or recorded as failed); only the move failed, and a
            # later run will see the file as already ingested
            note = FailedDump(
                str(path),
                None,
                f"ingested as {result.status}, but could not move it: {exc.strerror or exc}",
                f"Check that {inbox} and its {PROCESSED}/ and {FAILED}/ folders are writable.",
            )
            if result.error is None:
                result.error = note
                result.status = "failed"
        report.dumps.append(result)
        if progress is not None:
            progress(done, len(files))
    return report
