"""Real captures of Hugging Face papers pages give exactly the papers they show.

The captures live beside the clone, in ``../shared/real-pages`` (or ``$DIGESTBOT_REAL_PAGES``),
each with ``NAME.expected.json``: the papers the page shows, in page order, repeats merged.
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from digestbot.cli import main
from digestbot.ingest import ParsedPaper, parse_file

# read once, at import: the CLI tests' runner clears DIGESTBOT_* from the environment
_ENV = os.environ.get("DIGESTBOT_REAL_PAGES")


def _real_pages() -> Path:
    beside = Path(__file__).resolve().parents[2] / "shared" / "real-pages"
    if beside.is_dir():
        return beside
    env = _ENV
    if env and Path(env).is_dir():
        return Path(env)
    pytest.fail(
        f"the real captures are missing: neither {beside} nor $DIGESTBOT_REAL_PAGES "
        f"({env!r}) is a folder"
    )


CAPTURES = {
    # name: (listing date, papers)
    "hf-search-intercode-bash.urls-on-lines": (date(2026, 3, 25), 107),
    "hf-search-source-citations.firecrawl-md": (date(2026, 10, 2), 120),
    "hf-daily-papers-mirror.index-first7": (date(2026, 10, 3), 7),
}
FILES = [
    (name, f"{name}{suffix}")
    for name in CAPTURES
    for suffix in ((".json",) if name.endswith("first7") else (".txt", ".page.txt"))
]


def as_expected(paper: ParsedPaper) -> dict[str, Any]:
    """A parsed paper in the fields of ``NAME.expected.json``."""
    abstract = " ".join(paper.abstract.split())
    authors = paper.author_count
    if authors is None and paper.authors:
        authors = len(paper.authors)
    return {
        "title": paper.title,
        "arxiv_id": paper.arxiv_id,
        "upvotes": paper.upvotes or 0,
        "comments": paper.comments,
        "authors": authors,
        "organization": paper.organization,
        "published": paper.published_on.isoformat() if paper.published_on else None,
        "abstract_head": abstract[:60],
        "abstract_tail": abstract[-60:],
    }


@pytest.mark.parametrize(("name", "file"), FILES)
def test_a_real_capture_gives_exactly_the_papers_it_shows(name: str, file: str) -> None:
    folder = _real_pages()
    expected = json.loads((folder / f"{name}.expected.json").read_text(encoding="utf-8"))
    listed_on, count = CAPTURES[name]
    dump = parse_file(folder / file)
    assert (dump.listed_on, len(dump.papers), dump.warnings) == (listed_on, count, [])
    assert len(expected) == count
    for got, want in zip(dump.papers, expected, strict=True):
        assert as_expected(got) == want


@pytest.mark.parametrize("name", [n for n in CAPTURES if not n.endswith("first7")])
def test_the_wrapped_and_the_bare_capture_give_the_same_papers(name: str) -> None:
    folder = _real_pages()
    wrapped = parse_file(folder / f"{name}.txt")
    bare = parse_file(folder / f"{name}.page.txt")
    assert [as_expected(p) for p in wrapped.papers] == [as_expected(p) for p in bare.papers]
    assert [p.links for p in wrapped.papers] == [p.links for p in bare.papers]


@pytest.mark.parametrize(("name", "file"), FILES)
def test_ingest_command_stores_every_paper_of_a_capture(
    runner: CliRunner, tmp_path: Path, name: str, file: str
) -> None:
    path = _real_pages() / file
    db = f"sqlite:///{tmp_path / 'x.db'}"
    result = runner.invoke(main, ["ingest", str(path), "--json", "--db", db])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["papers_new"] == CAPTURES[name][1]
