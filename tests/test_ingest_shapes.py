"""Every other rendering of a papers page a user may save, each with the papers it shows, and
the renderings digestbot must refuse rather than store as garbage."""

from __future__ import annotations

import html
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from digestbot.errors import IngestError
from digestbot.ingest import ParsedDump, parse_file

PAGES = Path(__file__).resolve().parent / "data" / "pages"
DIFF_ABSTRACT = (
    "Transformer tends to overallocate attention to irrelevant context. In this work, we "
    "introduce Diff Transformer"
)


def _facts(dump: ParsedDump) -> list[tuple[Any, ...]]:
    return [
        (
            p.title,
            p.arxiv_id,
            p.upvotes,
            p.comments,
            p.author_count,
            p.organization,
            p.published_on,
        )
        for p in dump.papers
    ]


def test_reader_copy_with_reference_links_whose_targets_are_missing() -> None:
    """A reader tool's Markdown: a header block, reference links [text][n] with no targets,
    ### headings, abstracts hard-wrapped inside link brackets, anchors, image placeholders."""
    dump = parse_file(PAGES / "reader-references.md")
    assert dump.format == "hf-text"
    assert dump.listed_on == date(2024, 10, 8)  # "Oct 8", the year from the header block
    assert _facts(dump) == [
        ("Differential Transformer", None, 19, 12, 5, None, date(2024, 10, 7)),
        (
            "Scaling Laws for Sparsely-Connected Foundation Models",
            None,
            0,
            None,
            None,
            "Google",
            date(2023, 9, 15),
        ),
    ]
    diff, sparse = dump.papers
    assert diff.abstract.startswith(DIFF_ABSTRACT)
    assert diff.abstract.endswith("canceling noise.")
    assert sparse.abstract.startswith("We explore the impact of parameter sparsity on the")
    assert "Trans-formers trained" in sparse.abstract  # a hard wrap after a hyphen


def test_trending_page_listing_each_paper_twice_inside_a_code_fence() -> None:
    """Front matter, a code fence and rules around the page; '## Trending Papers'; each
    paper twice; author lines glued to abstracts; no listing date on the page."""
    dump = parse_file(PAGES / "trending.md")
    assert dump.listed_on == date(2024, 10, 9)  # when it was captured
    assert dump.entries == 4
    assert _facts(dump) == [
        ("Differential Transformer", "2410.05258", 117, None, 5, None, date(2024, 10, 7)),
        (
            "GSM-Symbolic: Understanding the Limitations of Mathematical Reasoning",
            "2410.05229",
            42,
            None,
            6,
            None,
            date(2024, 10, 7),
        ),
    ]
    assert dump.papers[0].abstract == f"{DIFF_ABSTRACT}."


def test_a_single_papers_page() -> None:
    dump = parse_file(PAGES / "single-paper.md")
    assert dump.listed_on == date(2024, 10, 7)
    assert _facts(dump) == [
        ("Differential Transformer", "2410.05258", 117, None, 7, None, date(2024, 10, 7))
    ]
    assert dump.papers[0].abstract == (
        f"{DIFF_ABSTRACT}, which amplifies attention to the relevant context while canceling noise."
    )


def test_html_page_read_from_its_visible_markup() -> None:
    dump = parse_file(PAGES / "daily-visible.html")
    assert dump.format == "hf-html"
    assert dump.listed_on == date(2024, 10, 8)
    assert _facts(dump) == [
        ("Differential Transformer", "2410.05258", 19, 12, 5, None, date(2024, 10, 7)),
        (
            "Scaling Laws for Sparsely-Connected Foundation Models",
            "2309.08520",
            0,
            None,
            None,
            "Google",
            date(2023, 9, 15),
        ),
    ]


def _api_item(arxiv_id: str, title: str, **paper: Any) -> dict[str, Any]:
    return {
        "paper": {
            "id": arxiv_id,
            "title": title,
            "summary": f"{title} is studied here at length.",
            "authors": [{"name": "Ada"}, {"name": "Kenji"}],
            "upvotes": 7,
            "publishedAt": "2024-10-07T00:00:00.000Z",
            **paper,
        },
        "publishedAt": "2024-10-08T09:00:00.000Z",
        "numComments": 2,
    }


def test_html_page_read_from_its_embedded_json(tmp_path: Path) -> None:
    props = {"date": "2024-10-08", "dailyPapers": [_api_item("2410.05258", "Diff")] * 2}
    page = tmp_path / "daily.html"
    page.write_text(
        "<!DOCTYPE html>\n<html><body><nav><a href='/models'>Models</a></nav>\n"
        f'<div class="SVELTE_HYDRATER" data-target="DailyPapers" '
        f'data-props="{html.escape(json.dumps(props))}"><h3>Diff</h3></div>\n</body></html>',
        encoding="utf-8",
    )
    dump = parse_file(page)
    assert (dump.format, dump.listed_on, dump.entries) == ("hf-html", date(2024, 10, 8), 2)
    assert _facts(dump) == [("Diff", "2410.05258", 7, 2, 2, None, date(2024, 10, 7))]


def test_a_single_papers_html_page_on_one_line(tmp_path: Path) -> None:
    props = {"paper": _api_item("2410.05229", "GSM-Symbolic", upvotes=42)["paper"]}
    page = tmp_path / "paper.html"
    page.write_text(
        f"<!doctype html><html><head><title>Paper</title></head><body><main><div data-target="
        f'"PaperPage" data-props="{html.escape(json.dumps(props))}"></div></main></body></html>',
        encoding="utf-8",
    )
    dump = parse_file(page, listing_date=date(2024, 10, 8))
    assert _facts(dump) == [("GSM-Symbolic", "2410.05229", 42, None, 2, None, date(2024, 10, 7))]


def test_json_envelope_with_authors_as_strings(tmp_path: Path) -> None:
    envelope = {
        "date": "2026-10-03",
        "count": 2,
        "papers": [
            {"id": "2609.22753", "title": "Jev", "summary": "S.", "authors": ["A", "B", "C"]},
            {"id": "2610.01092", "title": "Ego2Act", "summary": "S.", "authors": [{"name": "D"}]},
        ],
    }
    path = tmp_path / "mirror.json"
    path.write_text(json.dumps(envelope), encoding="utf-8")
    dump = parse_file(path)
    assert dump.listed_on == date(2026, 10, 3)  # the envelope's date
    assert [(p.arxiv_id, p.authors) for p in dump.papers] == [
        ("2609.22753", ["A", "B", "C"]),
        ("2610.01092", ["D"]),
    ]
    del envelope["papers"][1]["summary"]  # type: ignore[index, attr-defined]
    path.write_text(json.dumps(envelope), encoding="utf-8")
    with pytest.raises(IngestError) as info:
        parse_file(path)
    assert (info.value.field, info.value.message) == ("papers[1].summary", "missing summary")


# --- refused, never stored as garbage ----------------------------------------------------


def _refused(tmp_path: Path, name: str, text: str) -> IngestError:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(IngestError) as info:
        parse_file(path, listing_date=date(2024, 10, 8))
    assert info.value.hint is not None and "daily_papers API JSON" in info.value.hint
    return info.value


def test_a_title_holding_a_url_is_refused(tmp_path: Path) -> None:
    error = _refused(
        tmp_path,
        "flat.md",
        "Daily Papers\n\nOct 8\n\n[-] 5\n\n"
        "Differential Transformer https://huggingface.co/papers/2410.05258 (Oct 7)\n\n"
        "[An abstract.](https://huggingface.co/papers/2410.05258)\n",
    )
    assert error.message.startswith(
        "the file looks like a papers page converted to Markdown, but its entries are not "
        "papers: a title holding a URL"
    )


def test_a_whole_page_as_one_paragraph_is_refused(tmp_path: Path) -> None:
    """A capture whose page text lost its line breaks: one 'paper' would hold the page."""
    page = " ".join(
        ["Models Datasets Spaces Daily Papers Oct 8 [-] 19 Differential Transformer"] * 200
    )
    error = _refused(
        tmp_path, "capture.txt", f"SOURCE-URL: https://huggingface.co/papers\n\n{page}\n"
    )
    assert error.message.startswith("not a papers listing: the file is text with no paper")


def test_page_text_in_an_abstract_is_refused(tmp_path: Path) -> None:
    error = _refused(
        tmp_path,
        "glued.md",
        "Daily Papers\n\nOct 8\n\n[-] 5\n\n### [A Paper](https://huggingface.co/papers/2410.05258)\n\n"
        "[An abstract. Get trending papers in your email inbox! Subscribe](https://huggingface.co/papers/2410.05258)\n",
    )
    assert "an abstract holding the page's own text" in error.message


def test_a_navigation_word_as_a_title_is_refused(tmp_path: Path) -> None:
    error = _refused(
        tmp_path,
        "nav.md",
        "Daily Papers\n\nOct 8\n\n[-] 5\n\n### [Trending Papers](https://huggingface.co/papers/2410.05258)\n\n"
        "[An abstract.](https://huggingface.co/papers/2410.05258)\n",
    )
    assert "a title that is the site's navigation" in error.message
