"""A big dump parsed in a child process while it is written ends exactly as one pass does:
the same papers, sightings, dump records, reports and errors (with their line numbers)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from digestbot.ingest import ingest_paths, lines, load, stream
from digestbot.ingest.report import DumpResult
from digestbot.store import Dump, Paper, Sighting, Store, open_store

from .conftest import SEEDS

DUMPS = Path(__file__).resolve().parent / "data" / "dumps"
NOW = datetime(2025, 1, 5, 7, 30, tzinfo=UTC)
HEADER = (
    "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
    "byAK and the research community\n\nDec 29\n\n"
)


def _entry(i: int, *, upvotes: int = 0, longer: bool = False) -> str:
    abstract = f"Paper {i} studies a method. " + ("It works well. " if longer else "")
    meta = f"  • {i % 5 + 1} authors\n·\nDec {i % 28 + 1} {i % 3}\n\n" if i % 2 else ""
    upvote = f"[-] {upvotes}\n\n" if upvotes else ""
    link = f"https://huggingface.co/papers/2412.{10000 + i}\n\n" if i % 3 == 0 else ""
    return f"{upvote}{link}A Study Of Method {i}\n\n{abstract.strip()}\n\n{meta}"


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _dumps(folder: Path) -> list[Path]:
    """Good and bad dumps, in the order they are ingested."""
    shutil.copytree(SEEDS, folder / "seeds")
    first = HEADER + "".join(_entry(i) for i in range(40))
    # the next day: more upvotes, longer abstracts, papers 30-39 gone, 40-59 new
    again = HEADER.replace("Dec 29", "Dec 30") + "".join(
        _entry(i, upvotes=i + 1, longer=i % 4 == 0) for i in range(60) if not 30 <= i < 40
    )
    # a paper listed twice, the second time in a later batch, with better facts
    repeats = HEADER + "".join(_entry(i) for i in range(60, 80)) + _entry(63, upvotes=9)
    late_error = HEADER + "".join(_entry(i) for i in range(80, 100)) + "A Title Alone\n\n"
    # the error comes just after a batch is sent: its hint still names the paper before
    slipped = HEADER + "".join(_entry(i) for i in range(100, 121)) + "x" * 400 + "\n\n"
    cut = HEADER + "".join(_entry(i) for i in range(120, 140)) + "A Study\n\nIt ends mid"
    return [
        folder / "seeds",
        DUMPS / "hf_page_real.txt",
        DUMPS / "daily_papers.json",
        DUMPS / "no_abstract.txt",
        _write(folder, "first.txt", first),
        _write(folder, "again.txt", again),
        _write(folder, "repeats.txt", repeats),
        _write(folder, "late_error.txt", late_error),
        _write(folder, "slipped.txt", slipped),
        _write(folder, "cut.txt", cut),
        _write(folder, "empty.txt", ""),
    ]


def _snapshot(store: Store) -> dict[str, Any]:
    with store.session() as s:
        hashes = dict(s.execute(select(Dump.id, Dump.content_hash)).all())
        dumps = s.execute(
            select(Dump.__table__).with_only_columns(
                *(c for c in Dump.__table__.c if c.name != "id")
            )
        ).all()
        sightings = [
            (r.paper_id, hashes[r.dump_id], r.position, r.listed_on, r.upvotes, r.comments)
            for r in s.scalars(select(Sighting))
        ]
        papers = s.execute(select(Paper.__table__).order_by(Paper.id)).all()
    return {"dumps": sorted(dumps), "sightings": sorted(sightings), "papers": papers}


def _results(results: list[DumpResult]) -> list[DumpResult]:
    return [replace(r, dump_id=None) for r in results]


def test_a_streamed_ingest_ends_as_one_pass_does(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _dumps(tmp_path)
    one_pass = open_store(tmp_path / "one_pass.db")
    try:
        expected = ingest_paths(one_pass, paths, now=NOW)
        expected_rows = _snapshot(one_pass)
    finally:
        one_pass.dispose()
    # every dump through the child process, in batches of 7 papers
    monkeypatch.setattr(load, "STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(stream, "BATCH", 7)
    monkeypatch.setattr(lines, "SEGMENT", 300)  # lines split off a few entries at a time
    streamed = ingest_paths(store, paths, now=NOW)

    assert _results(streamed.dumps) == _results(expected.dumps)
    assert _snapshot(store) == expected_rows
    by_name = {Path(r.file).name: r for r in streamed.dumps}
    assert by_name["again.txt"].updated_ids and by_name["again.txt"].new_ids
    assert by_name["repeats.txt"].entries == 21 and by_name["repeats.txt"].papers == 20
    assert by_name["cut.txt"].warnings
    errors = {name: r.error for name, r in by_name.items() if r.error is not None}
    assert sorted(errors) == ["empty.txt", "late_error.txt", "no_abstract.txt", "slipped.txt"]
    assert errors["late_error.txt"].line == HEADER.count("\n") + 1 + sum(
        _entry(i).count("\n") for i in range(80, 100)
    )
    assert errors["slipped.txt"].hint and "A Study Of Method 120" in errors["slipped.txt"].hint


def test_a_parser_process_killed_midway_fails_that_dump_only(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import signal
    import time

    monkeypatch.setattr(load, "STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(stream, "BATCH", 7)
    send = stream._Sender.papers

    def slow_send(self: Any, *args: Any) -> None:  # runs in the (forked) child
        send(self, *args)
        time.sleep(0.05)  # still parsing when the parent kills it below

    monkeypatch.setattr(stream._Sender, "papers", slow_send)
    first = stream.ParseStream.first
    victim = tmp_path / "victim.txt"

    def first_then_kill(self: stream.ParseStream) -> Any:
        papers = first(self)
        if self.path == victim:
            os.kill(self._process.pid, signal.SIGKILL)  # type: ignore[arg-type]
        return papers

    monkeypatch.setattr(stream.ParseStream, "first", first_then_kill)
    _write(tmp_path, "victim.txt", HEADER + "".join(_entry(i) for i in range(200)))
    survivor = _write(
        tmp_path, "survivor.txt", HEADER + "".join(_entry(i) for i in range(300, 320))
    )
    report = ingest_paths(store, [victim, survivor], now=NOW)

    failed, ok = report.dumps
    assert failed.status == "failed" and failed.error is not None
    assert str(failed.error.file).endswith("victim.txt")
    assert "stopped before it finished" in str(failed.error) and failed.error.hint
    assert ok.status == "ok" and len(ok.new_ids) == 20
    with store.session() as s:
        # nothing of the killed dump was kept, only its failure
        assert s.scalar(select(func.count()).select_from(Paper)) == 20
        dumps = dict(s.execute(select(Dump.file_name, Dump.status)).all())
    assert dumps == {"victim.txt": "failed", "survivor.txt": "ok"}
