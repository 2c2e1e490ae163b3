"""What a fetch did, request by request."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FetchResult:
    source: str
    label: str  # "hf 2026-11-22"
    url: str
    status: str  # written | unchanged | empty | failed
    file: str | None = None  # the dump written into the inbox
    papers: int = 0
    error: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        if self.status == "written":
            return f"{self.label}: {self.papers} papers -> {self.file}"
        if self.status == "unchanged":
            return f"{self.label}: unchanged since the last fetch, nothing written"
        if self.status == "empty":
            return f"{self.label}: no papers listed, nothing written"
        return f"{self.label}: failed: {self.error}"


@dataclass
class FetchReport:
    results: list[FetchResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def written(self) -> int:
        return self.count("written")

    @property
    def unchanged(self) -> int:
        return self.count("unchanged")

    @property
    def empty(self) -> int:
        return self.count("empty")

    @property
    def failed(self) -> list[FetchResult]:
        return [r for r in self.results if r.status == "failed"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "unchanged": self.unchanged,
            "empty": self.empty,
            "failed": len(self.failed),
            "results": [asdict(r) for r in self.results],
        }
