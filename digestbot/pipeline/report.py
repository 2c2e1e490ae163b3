"""What a run did: counts per stage, time per stage, and the outcome."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class DigestOutcome:
    subscriber_id: int
    period: str
    state: str  # queued | feed_only | empty | exists | skipped | failed
    error: str | None = None


@dataclass
class RunReport:
    now: datetime
    replay: bool = False  # now was given (--now, tests) rather than read from the clock
    fetched: bool = False  # sources were fetched (fetch.sources is set)
    fetch_written: int = 0
    fetch_unchanged: int = 0
    fetch_empty: int = 0
    fetch_failures: list[str] = field(default_factory=list)  # "hf 2026-11-22: why"
    files: int = 0
    papers_new: int = 0
    papers_updated: int = 0
    ingest_failed: int = 0
    due: int = 0
    bad_schedules: int = 0
    digests: list[DigestOutcome] = field(default_factory=list)
    sent: int = 0
    retried: int = 0
    send_failed: int = 0
    bounced: int = 0
    feeds: int = 0
    feeds_failed: list[tuple[int, str]] = field(default_factory=list)  # reader id, why
    pruned: int = 0  # digests past store.retention_days, deleted
    timings: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    stopped: bool = False

    def count(self, state: str) -> int:
        return sum(1 for d in self.digests if d.state == state)

    @property
    def queued(self) -> int:
        return self.count("queued")

    @property
    def feed_only(self) -> int:
        return self.count("feed_only")

    @property
    def digest_failed(self) -> int:
        return self.count("failed")

    @property
    def failures(self) -> int:
        return (
            len(self.fetch_failures)
            + self.ingest_failed
            + self.digest_failed
            + self.bad_schedules
            + self.send_failed
            + self.retried
            + len(self.errors)
            + len(self.feeds_failed)
        )

    @property
    def did_something(self) -> bool:
        return bool(
            self.fetch_written
            or self.files
            or self.due
            or self.digests
            or self.sent
            or self.retried
            or self.send_failed
            or self.bounced
        )

    @property
    def status(self) -> str:
        """ok, partial (something failed or will be retried), or nothing (no work found)."""
        if self.failures or self.stopped:  # stopped: what is left waits for the next run
            return "partial"
        return "ok" if self.did_something else "nothing"

    def as_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "status": self.status,
            "fetch": {
                "enabled": self.fetched,
                "written": self.fetch_written,
                "unchanged": self.fetch_unchanged,
                "empty": self.fetch_empty,
                "failed": len(self.fetch_failures),
                "failures": list(self.fetch_failures),
            },
            "ingest": {
                "files": self.files,
                "papers_new": self.papers_new,
                "papers_updated": self.papers_updated,
                "failed": self.ingest_failed,
            },
            "digests": {
                "due": self.due,
                "queued": self.queued,
                "feed_only": self.feed_only,
                "empty": self.count("empty"),
                "failed": self.digest_failed,
                "bad_schedules": self.bad_schedules,
            },
            "send": {
                "sent": self.sent,
                "retried": self.retried,
                "failed": self.send_failed,
                "bounced": self.bounced,
            },
            "feeds": self.feeds,
            "feeds_failed": [{"subscriber_id": i, "error": e} for i, e in self.feeds_failed],
            "pruned": self.pruned,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "errors": list(self.errors),
            "stopped": self.stopped,
            "outcomes": [asdict(d) for d in self.digests],
        }

    def summary_lines(self) -> list[str]:
        """Plain lines for journald and cron mail: one per stage, then the result."""
        t = self.timings

        def took(stage: str) -> str:
            return f"  ({t[stage]:.2f} s)" if stage in t else "  (skipped)"

        lines = []
        if self.fetched:
            lines.append(
                f"fetch:   {self.fetch_written} written, {self.fetch_unchanged} unchanged, "
                f"{self.fetch_empty} empty, {len(self.fetch_failures)} failed{took('fetch')}"
            )
        lines += [
            f"ingest:  {self.files} files, {self.papers_new} new papers, "
            f"{self.papers_updated} updated, {self.ingest_failed} failed{took('ingest')}",
            f"due:     {self.due} subscriber{'' if self.due == 1 else 's'}{took('select')}",
            f"digests: {self.queued} queued, {self.feed_only} feed only, "
            f"{self.count('empty')} empty, {self.digest_failed} failed{took('digests')}",
            f"send:    {self.sent} sent, {self.retried} retried, {self.send_failed} failed, "
            f"{self.bounced} bounced{took('send')}",
            f"feeds:   {self.feeds} written"
            + (f", {len(self.feeds_failed)} failed" if self.feeds_failed else "")
            + took("feeds"),
        ]
        lines += [f"error:   fetch: {f}" for f in self.fetch_failures]
        lines += [f"error:   {e}" for e in self.errors]
        return lines


@contextmanager
def timed(report: RunReport, stage: str) -> Iterator[None]:
    """Add the time the block takes to ``report.timings[stage]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        report.timings[stage] = report.timings.get(stage, 0.0) + time.perf_counter() - started
