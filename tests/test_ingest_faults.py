"""One bad file never stops the others, nor the run: every dump that cannot be read or stored
fails alone, recorded with its reason, moved to failed/ from the inbox, and the rest goes on."""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from digestbot.cli import main
from digestbot.errors import IngestError
from digestbot.ingest import ingest_inbox, ingest_paths, parse_file
from digestbot.ingest import parse as parse_module
from digestbot.pipeline import run_once
from digestbot.store import Dump, Paper, Store, open_store

from .conftest import SEEDS, make_config
from .pipeline_helpers import add, fill_inbox

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SEED = SEEDS / "004_fc84b73cccc19c7c.txt"  # 48 papers
SEED_PAPERS = 48
LONE = "\ud83d"  # half of a surrogate pair: no UTF-8 encoder takes it
HEADER = (
    "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
    "byAK and the research community\n\n"
)
ABSTRACT = "We study a thing and find that it works well on every benchmark we tried."


def _nested(folder: Path) -> Path:
    path = folder / "nested.json"
    path.write_text("[" * 200_000, encoding="utf-8")
    return path


def _surrogate_json(folder: Path) -> Path:
    item = {
        "paper": {
            "id": "2410.05258",
            "title": f"Differential {LONE} Transformer",
            "summary": f"An abstract {LONE} with a broken emoji.",
            "authors": [{"name": f"Ada {LONE}"}, f"Kenji {LONE}"],
            "githubRepo": f"https://github.com/example/repo{LONE}",
            "upvotes": 3,
        },
        "publishedAt": "2024-10-08T00:00:00Z",
        "numComments": 1,
    }
    path = folder / "surrogates.json"
    # json.dumps writes the lone surrogate as the escape \ud83d, as a broken API would
    path.write_text(json.dumps({"date": "2024-10-08", "papers": [item]}), encoding="ascii")
    return path


def _failed_names(report: Any) -> list[str]:
    return [Path(f.file).name for f in report.failed]


# --- each bad input fails alone --------------------------------------------------------


def test_lone_surrogates_in_every_text_field_of_a_json_dump(store: Store, tmp_path: Path) -> None:
    report = ingest_paths(store, [_surrogate_json(tmp_path), SEED], now=NOW)
    assert report.ok, report.as_dict()
    assert report.papers_new == 1 + SEED_PAPERS
    with store.session() as s:
        paper = s.get(Paper, "2410.05258")
        assert paper is not None
        assert paper.title == "Differential \ufffd Transformer"
        assert paper.abstract == "An abstract \ufffd with a broken emoji."
        assert paper.authors == ["Ada \ufffd", "Kenji \ufffd"]
        assert paper.github_url == "https://github.com/example/repo\ufffd"


def test_lone_surrogates_in_a_text_dump_and_its_name(store: Store, tmp_path: Path) -> None:
    page = (
        HEADER + f"Dec 29\n\n[-] 4\n\nA Title {LONE} Here\n\nAn abstract {LONE}.\n\n"
        f"  • Org {LONE}\n·\nDec 1\n"
    )
    utf8 = tmp_path / "utf8.txt"
    utf8.write_bytes(page.encode("utf-8", "surrogatepass"))  # not valid UTF-8
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes(page.encode("utf-16", "surrogatepass"))  # not valid UTF-16
    # a file name holding a byte that is not UTF-8: Python gives it as a lone surrogate
    odd_name = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.txt"))
    odd_name.write_bytes(SEED.read_bytes())
    report = ingest_paths(store, [utf8, utf16, odd_name], now=NOW)
    assert report.papers_new == 1 + SEED_PAPERS
    assert _failed_names(report) == ["utf16.txt"]
    assert report.failed[0].error.startswith("broken UTF-16 text")
    assert any("broken UTF-8" in w for w in report.warnings)
    with store.session() as s:
        names = set(s.scalars(select(Dump.file_name)))
    assert names == {"utf8.txt", "utf16.txt", "caf\ufffd.txt"}
    assert all(LONE not in d.file for d in report.dumps)


def test_deeply_nested_json_fails_alone(store: Store, tmp_path: Path) -> None:
    report = ingest_paths(store, [_nested(tmp_path), SEED], now=NOW)
    assert report.papers_new == SEED_PAPERS
    (failure,) = report.failed
    assert (Path(failure.file).name, failure.error) == (
        "nested.json",
        "JSON nested too deeply to be a papers listing",
    )
    with store.session() as s:
        assert s.scalar(select(Dump.status).where(Dump.file_name == "nested.json")) == "failed"


def test_fifty_megabytes_on_one_line(store: Store, tmp_path: Path) -> None:
    size = 50 * 1024 * 1024
    words = tmp_path / "words.txt"
    words.write_bytes(b"lorem ipsum " * (size // 12))
    links = tmp_path / "links.md"
    links.write_bytes(b"[x](https://example.org) " * (size // 25))
    report = ingest_paths(store, [words, links, SEED], now=NOW)
    assert report.papers_new == SEED_PAPERS
    assert _failed_names(report) == ["words.txt", "links.md"]
    assert report.failed[0].error.startswith("not a papers listing")
    assert report.failed[1].error == (
        "not a papers listing: line 1 is 52,428,800 characters long, far longer than any "
        "line of a papers page"
    )


def test_utf16_with_a_bom(store: Store, tmp_path: Path) -> None:
    text = tmp_path / "page.txt"
    text.write_bytes(SEED.read_text(encoding="utf-8").encode("utf-16"))
    as_json = tmp_path / "api.json"
    as_json.write_bytes(
        json.dumps([{"paper": {"title": "Naïve Bayes", "summary": ABSTRACT}}]).encode("utf-16")
    )
    report = ingest_paths(store, [text, as_json], listing_date=date(2024, 4, 13), now=NOW)
    assert report.ok, report.as_dict()
    assert report.papers_new == SEED_PAPERS + 1


def test_gzip_is_read(store: Store, tmp_path: Path) -> None:
    packed = tmp_path / "page.txt.gz"
    packed.write_bytes(gzip.compress(SEED.read_bytes()))
    cut = tmp_path / "cut.json.gz"
    cut.write_bytes(gzip.compress(b'[{"paper": {"title": "T", "summary": "S"}}]' * 50)[:40])
    report = ingest_paths(store, [cut, packed], listing_date=date(2025, 4, 13), now=NOW)
    assert report.papers_new == SEED_PAPERS
    (failure,) = report.failed
    assert failure.error == "gzip file ends early: it looks cut off"
    # the same page uncompressed is a different file, but the same papers
    assert ingest_paths(store, [SEED], listing_date=date(2025, 4, 13), now=NOW).papers_new == 0


def test_a_gzip_bomb_stops_at_the_size_limit(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.gz"
    bomb.write_bytes(gzip.compress(b" " * (20 * 1024 * 1024)))
    with pytest.raises(IngestError) as info:
        parse_file(bomb, max_bytes=1024 * 1024)
    assert info.value.message == "gzip file holds over 1 MB"


@pytest.mark.timeout(60)
def test_a_fifo_is_skipped_with_a_warning(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "dumps"
    folder.mkdir()
    os.mkfifo(folder / "a-pipe")
    shutil.copy(SEED, folder / "b-seed.txt")
    lone = tmp_path / "given.fifo"
    os.mkfifo(lone)
    report = ingest_paths(store, [folder, lone], now=NOW)
    assert report.ok and report.papers_new == SEED_PAPERS
    assert report.warnings == [
        f"{folder / 'a-pipe'}: skipped: a named pipe (FIFO), not a dump file",
        f"{lone}: skipped: a named pipe (FIFO), not a dump file",
    ]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    os.mkfifo(inbox / "pipe")
    shutil.copy(SEED, inbox / "seed.txt")
    again = ingest_inbox(store, inbox, now=NOW)
    assert again.files == 1 and again.warnings == [f"{inbox / 'pipe'}: skipped: not a regular file"]
    assert (inbox / "pipe").exists()


def test_a_symlink_loop_fails_alone(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "dumps"
    folder.mkdir()
    (folder / "loop").symlink_to(folder / "loop")
    shutil.copy(SEED, folder / "seed.txt")
    report = ingest_paths(store, [folder], now=NOW)
    assert report.papers_new == SEED_PAPERS
    (failure,) = report.failed
    assert Path(failure.file).name == "loop"
    assert failure.error.startswith("cannot read the file: Too many levels of symbolic links")


def test_a_969_character_title_is_cut_with_a_warning(store: Store, tmp_path: Path) -> None:
    title = " ".join(["Word"] * 194)[:969]
    assert len(title) == 969
    page = tmp_path / "page.txt"
    page.write_text(HEADER + f"Dec 29\n\n{title}\n\n{ABSTRACT * 15}\n", encoding="utf-8")
    api = tmp_path / "api.json"
    api.write_text(json.dumps([{"paper": {"title": title + "!", "summary": ABSTRACT}}]))
    report = ingest_paths(store, [page, api], listing_date=date(2024, 12, 29), now=NOW)
    assert report.ok and report.papers_new == 1  # the same title, cut the same way
    assert report.warnings == [
        f"{page}:13: a title of 969 characters; cut to 300",
        f"{api}: [0].title: 970 characters; cut to 300",
    ]
    with store.session() as s:
        (stored,) = s.scalars(select(Paper.title))
    assert len(stored) <= 300 and stored.endswith("Word…")


# --- anything else, too ------------------------------------------------------------------


def _exploding_format(marker: str, exc: BaseException) -> parse_module.Format:
    def explode(*_: object) -> parse_module.Parsed:
        raise exc

    return parse_module.Format("boom", lambda head: head.startswith(marker), explode)


@pytest.mark.parametrize(
    "exc",
    [MemoryError(), RecursionError("maximum recursion depth exceeded"), KeyError("paper")],
)
def test_any_exception_fails_that_dump_alone_and_is_logged(
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    exc: BaseException,
) -> None:
    # a parser that fails in a way no one foresaw, for files starting with BOOM
    monkeypatch.setattr(
        parse_module, "FORMATS", [_exploding_format("BOOM", exc), *parse_module.FORMATS]
    )
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a-boom.txt").write_text("BOOM", encoding="utf-8")
    shutil.copy(SEED, inbox / "b-seed.txt")
    with caplog.at_level(logging.ERROR, logger="digestbot.ingest"):
        report = ingest_inbox(store, inbox, now=NOW)
    assert report.papers_new == SEED_PAPERS
    (failure,) = report.failed
    assert failure.error.startswith(f"digestbot could not read this dump ({type(exc).__name__}")
    assert failure.hint is not None and "traceback" in failure.hint
    assert any(r.exc_info and r.exc_info[0] is type(exc) for r in caplog.records)
    note = (inbox / "failed" / "a-boom.txt.error").read_text(encoding="utf-8")
    assert "could not read this dump" in note and "Hint: " in note
    assert (inbox / "processed" / "b-seed.txt").exists()
    with store.session() as s:
        assert s.scalar(select(Dump.status).where(Dump.file_name == "a-boom.txt")) == "failed"


# --- as a user runs it --------------------------------------------------------------------


def test_ingest_a_b_c_reads_all_three(runner: CliRunner) -> None:
    folder = Path("dumps")
    folder.mkdir()
    nested, surrogates = _nested(folder), _surrogate_json(folder)
    result = runner.invoke(
        main, ["ingest", str(nested), str(surrogates), str(SEED), "--json", "--db", "x.db"]
    )
    assert result.exit_code == 3, result.output
    data = json.loads(result.stdout)
    assert data["files"] == 3 and data["papers_new"] == 1 + SEED_PAPERS
    assert [Path(f["file"]).name for f in data["failed"]] == ["nested.json"]


def test_a_run_goes_on_to_digests_past_bad_dumps(tmp_path: Path) -> None:
    db = str(tmp_path / "d.db")
    config = make_config(tmp_path, db)
    store = open_store(db)
    try:
        inbox = config.path("ingest.inbox")
        _nested(inbox.parent).rename(inbox.parent / "0-nested.json")
        fill_inbox(inbox, count=1)
        shutil.move(inbox.parent / "0-nested.json", inbox / "0-nested.json")
        _surrogate_json(inbox)
        os.mkfifo(inbox / "pipe")
        add(store, "mail@example.org", send_hour=0)
        report = run_once(store, config, now=NOW)
        assert report.status == "partial"
        assert (report.ingest_failed, report.sent) == (1, 1)
        assert sorted(p.name for p in (inbox / "failed").iterdir()) == [
            "0-nested.json",
            "0-nested.json.error",
        ]
        assert (inbox / "processed" / "surrogates.json").exists()
        # the next run does not trip over it again
        again = run_once(store, config, now=NOW)
        assert again.ingest_failed == 0
    finally:
        store.dispose()
