"""CSV import and export of subscribers: a header row, one subscriber a row.

A bad row is reported with its line number and skipped; the other rows are imported.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ...errors import DigestbotError, ValidationError
from ..models import Feedback, Subscriber
from .core import add_subscriber, find_subscriber, update_subscriber

CSV_COLUMNS = (
    "email",
    "name",
    "keywords",
    "liked",
    "disliked",
    "frequency",
    "weekday",
    "send_hour",
    "timezone",
    "max_items",
    "min_score",
    "formats",
    "status",
)
_HEADER_HINT = "The first row names the columns; 'email' is required. Columns: " + ", ".join(
    CSV_COLUMNS
)


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    known: int = 0  # rows refused because the address is already subscribed
    failed: list[tuple[int, DigestbotError]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


@contextmanager
def _open(path_or_file: str | Path | IO[str], mode: str) -> Iterator[tuple[IO[str], str | None]]:
    if isinstance(path_or_file, str | Path):
        path = Path(path_or_file)
        try:
            with path.open(mode, encoding="utf-8-sig" if "r" in mode else "utf-8", newline="") as f:
                yield f, str(path)
        except FileNotFoundError:
            raise ValidationError(
                "file not found", file=path, hint="Check the path of the CSV file."
            ) from None
        except UnicodeDecodeError:
            raise ValidationError(
                "not UTF-8 text", file=path, hint="Save the CSV file as UTF-8."
            ) from None
    else:
        yield path_or_file, getattr(path_or_file, "name", None)


def import_csv(
    session: Session,
    path_or_file: str | Path | IO[str],
    *,
    update: bool = False,
    commit_every: int = 0,
) -> ImportReport:
    """Add a subscriber per row; columns as in :data:`CSV_COLUMNS`, only ``email`` required.

    With ``update`` a row whose address is known (any case) changes that subscriber's
    columns given in the row instead of failing as a duplicate; ids, tokens and history
    stay, so a rerun of the same import changes nothing. With ``commit_every`` the session is
    committed after that many rows written (and at the end), so a long import never holds
    the store's write lock for long: the web front and runs get their turn in between."""
    report = ImportReport()
    with _open(path_or_file, "r") as (f, name):
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise ValidationError(
                "the file is empty", file=name, line=1, hint=_HEADER_HINT
            ) from None
        columns = [h.strip().lower() for h in header]
        unknown = [c for c in columns if c and c not in CSV_COLUMNS]
        if unknown:
            raise ValidationError(
                f"unknown column {unknown[0]!r}",
                file=name,
                line=1,
                field=unknown[0],
                hint=_HEADER_HINT,
            )
        if "email" not in columns:
            raise ValidationError(
                "no 'email' column", file=name, line=1, field="email", hint=_HEADER_HINT
            )
        start = reader.line_num + 1
        for row in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            try:
                if len(row) > len(columns):
                    raise ValidationError(
                        f"{len(row)} fields, the header has {len(columns)}",
                        hint='Quote fields that contain commas, e.g. "a, b".',
                    )
                values: dict[str, Any] = {
                    c: v.strip() for c, v in zip(columns, row, strict=False) if c and v.strip()
                }
                values.setdefault("email", "")
                known = find_subscriber(session, values["email"]) if update else None
                # both check everything before they write, so a bad row changes nothing
                if known is not None:
                    update_subscriber(session, known, **values)
                    report.updated += 1
                else:
                    add_subscriber(session, **values)
                    report.added += 1
                if commit_every and (report.added + report.updated) % commit_every == 0:
                    session.commit()
            except DigestbotError as error:
                error.file = error.file or name
                error.line = line
                report.failed.append((line, error))
                if not update and find_subscriber(session, values.get("email", "")) is not None:
                    report.known += 1
    if commit_every:
        session.commit()
    return report


def export_csv(session: Session, file: str | Path | IO[str], *, status: str | None = None) -> int:
    """Write every subscriber (or those with ``status``); returns how many."""
    feedback: dict[int, tuple[list[str], list[str]]] = {}
    for sub_id, paper_id, value in session.execute(
        select(Feedback.subscriber_id, Feedback.paper_id, Feedback.value).order_by(
            Feedback.subscriber_id, Feedback.created_at, Feedback.paper_id
        )
    ):
        feedback.setdefault(sub_id, ([], []))[0 if value > 0 else 1].append(paper_id)
    query = select(Subscriber).order_by(Subscriber.id)
    if status:
        query = query.where(Subscriber.status == status)
    count = 0
    with _open(file, "w") as (f, _name):
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for sub in session.scalars(query).yield_per(1000):
            liked, disliked = feedback.get(sub.id, ([], []))
            # the columns not written as stored; the others are the subscriber's attributes
            written = {
                "keywords": ", ".join(sub.keywords or []),
                "liked": " ".join(liked),
                "disliked": " ".join(disliked),
                "min_score": f"{sub.min_score:g}",
            }
            writer.writerow([written[c] if c in written else getattr(sub, c) for c in CSV_COLUMNS])
            count += 1
    return count
