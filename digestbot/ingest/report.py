"""What an ingest run did, per dump and in total."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from ..errors import DigestbotError
from .model import printable_name


@dataclass
class FailedDump:
    file: str
    line: int | None
    error: str
    hint: str | None = None

    @classmethod
    def from_error(cls, file: str, error: DigestbotError) -> FailedDump:
        # a JSON dump has no lines: the field ("papers[3].paper.upvotes") says where
        message = f"{error.field}: {error.message}" if error.field else error.message
        return cls(
            printable_name(error.file or file),
            error.line,
            printable_name(message),
            error.hint and printable_name(error.hint),
        )

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "error": self.error, "hint": self.hint}

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.error}"


@dataclass
class DumpResult:
    file: str
    status: str  # ok | skipped (already ingested) | failed
    format: str | None = None
    listed_on: date | None = None
    entries: int = 0
    papers: int = 0
    new_ids: list[str] = field(default_factory=list)
    updated_ids: list[str] = field(default_factory=list)
    dump_id: int | None = None
    error: FailedDump | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class IngestReport:
    dumps: list[DumpResult] = field(default_factory=list)
    # files passed over without a result of their own (a FIFO found in a folder)
    notes: list[str] = field(default_factory=list)

    @property
    def files(self) -> int:
        return len(self.dumps)

    @property
    def new_paper_ids(self) -> list[str]:
        return [pid for d in self.dumps for pid in d.new_ids]

    @property
    def updated_paper_ids(self) -> list[str]:
        """Papers that were already stored and got better facts (not those new in this run)."""
        new = set(self.new_paper_ids)
        updated = (pid for d in self.dumps for pid in d.updated_ids if pid not in new)
        return list(dict.fromkeys(updated))

    @property
    def papers_new(self) -> int:
        return len(self.new_paper_ids)

    @property
    def papers_updated(self) -> int:
        return len(self.updated_paper_ids)

    @property
    def failed(self) -> list[FailedDump]:
        return [d.error for d in self.dumps if d.error is not None]

    @property
    def skipped(self) -> int:
        return sum(d.status == "skipped" for d in self.dumps)

    @property
    def warnings(self) -> list[str]:
        return [printable_name(w) for w in self.notes + [w for d in self.dumps for w in d.warnings]]

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, object]:
        return {
            "files": self.files,
            "papers_new": self.papers_new,
            "papers_updated": self.papers_updated,
            "failed": [f.as_dict() for f in self.failed],
        }
