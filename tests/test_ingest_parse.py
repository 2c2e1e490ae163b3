"""The parsers alone: the seeds, every format variant, the year rules, and bad input."""

from __future__ import annotations

import json
import os
from datetime import date, datetime
from pathlib import Path

import pytest

from digestbot.errors import IngestError
from digestbot.ingest import detect_format, normalise_title, parse_file, title_key
from digestbot.ingest.dates import latest_on_or_before

from .conftest import SEEDS

DUMPS = Path(__file__).resolve().parent / "data" / "dumps"
HEADER = (
    "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
    "byAK and the research community\n\n"
)
ABSTRACT = "We study a thing and find that it works well on every benchmark we tried."


def write(path: Path, text: str, mtime: date | None = None) -> Path:
    path.write_text(text, encoding="utf-8")
    if mtime is not None:
        stamp = datetime(mtime.year, mtime.month, mtime.day, 12).timestamp()
        os.utime(path, (stamp, stamp))
    return path


# --- the seeds ---------------------------------------------------------------------------


def test_seeds_hold_281_entries_and_255_distinct_papers() -> None:
    dumps = [parse_file(p) for p in sorted(SEEDS.iterdir())]
    assert [d.entries for d in dumps] == [46, 84, 41, 62, 48]
    assert sum(d.entries for d in dumps) == 281
    assert len({p.key for d in dumps for p in d.papers}) == 255
    assert all(d.format == "hf-text" and not d.warnings for d in dumps)
    assert all(p.title and len(p.abstract) > 1000 for d in dumps for p in d.papers)


def test_seed_metadata_block_and_comment_count(tmp_path: Path) -> None:
    # the seed's listing is "Dec 29"; pin the year through the modification time
    seed = tmp_path / "seed.txt"
    seed.write_bytes((SEEDS / "000_9d4c3e15241ae462.txt").read_bytes())
    stamp = datetime(2025, 1, 3, 12).timestamp()
    os.utime(seed, (stamp, stamp))
    dump = parse_file(seed)
    assert dump.listed_on == date(2024, 12, 29)
    first = dump.papers[0]
    assert first.title.startswith("ViT-CoMer: Vision Transformer")
    assert (first.author_count, first.published_on, first.line) == (5, date(2024, 3, 12), 13)
    assert first.comments is None and first.upvotes is None
    # "Jun 11 2": a yearless date takes the listing's year, and 2 is comments, not upvotes
    probing = next(p for p in dump.papers if p.title.startswith("Attention, Please!"))
    assert (probing.published_on, probing.comments, probing.upvotes) == (date(2024, 6, 11), 2, None)
    # "Aug 28" with a Dec 29 listing: same year
    relp = next(p for p in dump.papers if p.title.startswith("RelP:"))
    assert relp.published_on == date(2024, 8, 28)
    # the seed's second paper has no metadata block at all
    assert dump.papers[1].author_count is None and dump.papers[1].published_on is None


def test_seed_without_metadata_blocks() -> None:
    dump = parse_file(SEEDS / "001_338f10c56c26307b.txt", listing_date=date(2025, 3, 14))
    assert dump.listed_on == date(2025, 3, 14)
    assert dump.entries == 84
    assert all(p.author_count is None and p.published_on is None for p in dump.papers)
    assert dump.papers[0].title == "Discovering Influential Neuron Path in Vision Transformers"


# --- the real page shape -----------------------------------------------------------------


def test_real_page_variants() -> None:
    dump = parse_file(DUMPS / "hf_page_real.txt", listing_date=date(2024, 10, 8))
    assert dump.format == "hf-text" and dump.listed_on == date(2024, 10, 8)
    diff, sparse, rope = dump.papers
    # upvote line before the title; URL line gives the arXiv id; link text "5 authors";
    # comment count on its own line, followed by the #community URL
    assert diff.title == "Differential Transformer"
    assert (diff.upvotes, diff.arxiv_id, diff.author_count, diff.comments) == (
        19,
        "2410.05258",
        5,
        12,
    )
    assert diff.published_on == date(2024, 10, 7)
    assert diff.links == ["https://huggingface.co/papers/2410.05258"]
    assert diff.id == "2410.05258"
    # the hard-wrapped abstract is one paragraph again
    assert diff.abstract.startswith("Transformer tends to overallocate attention to irrelevant")
    assert "In this work, we introduce" in diff.abstract and "\n" not in diff.abstract
    # "[-] -" means no upvotes; an organisation instead of an author count
    assert (sparse.upvotes, sparse.organization, sparse.author_count) == (0, "Google", None)
    assert sparse.published_on == date(2023, 9, 15) and sparse.arxiv_id == "2309.08520"
    # a URL wrapped onto its own line inside an abstract stays in the text
    assert "Code is available at https://github.com/example/sparse-scaling and we" in (
        sparse.abstract
    )
    assert "Trans-formers trained" in sparse.abstract
    # "Dec 29 3" with an Oct 8 listing: the year before; 3 comments
    assert (rope.published_on, rope.comments, rope.upvotes) == (date(2023, 12, 29), 3, 7)


def test_search_query_and_period_switch_are_header_not_papers() -> None:
    dump = parse_file(DUMPS / "hf_page_real.txt", listing_date=date(2024, 10, 8))
    titles = [p.title for p in dump.papers]
    assert "sparse attention" not in titles and "Daily / Weekly / Monthly" not in titles
    assert len(titles) == 3


def test_daily_papers_json() -> None:
    dump = parse_file(DUMPS / "daily_papers.json")
    assert dump.format == "hf-json"
    assert dump.listed_on == date(2024, 10, 8)  # the day most items were listed
    diff, aria, empty = dump.papers
    assert diff.title == "Differential Transformer" and diff.arxiv_id == "2410.05258"
    assert diff.authors is not None and len(diff.authors) == 7 and diff.author_count == 7
    assert (diff.upvotes, diff.comments) == (112, 14)
    assert diff.published_on == date(2024, 10, 7)
    assert diff.github_url == "https://github.com/microsoft/unilm"
    assert diff.abstract.endswith("outperforms Transformer in various settings.")
    assert (aria.upvotes, aria.comments, aria.author_count) == (98, 3, 2)
    assert empty.authors == [] and empty.author_count is None and empty.upvotes == 0


def test_json_detected_by_content_not_extension(tmp_path: Path) -> None:
    disguised = tmp_path / "listing.txt"
    disguised.write_bytes((DUMPS / "daily_papers.json").read_bytes())
    assert parse_file(disguised).format == "hf-json"
    text_as_json = tmp_path / "page.json"
    text_as_json.write_bytes((DUMPS / "hf_page_real.txt").read_bytes())
    assert parse_file(text_as_json, listing_date=date(2024, 10, 8)).format == "hf-text"
    assert detect_format("[-] 19\n\nTitle").name == "hf-text"  # a page starting with upvotes


def test_crlf_bom_and_utf16(tmp_path: Path) -> None:
    text = HEADER + "Dec 29\n\nNaïve Bayes Revisited\n\n" + ABSTRACT + "\n"
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(("\ufeff" + text).replace("\n", "\r\n").encode("utf-8"))
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes(text.encode("utf-16"))
    for path in (crlf, utf16):
        (paper,) = parse_file(path, listing_date=date(2024, 12, 29)).papers
        assert paper.title == "Naïve Bayes Revisited" and paper.abstract == ABSTRACT


def test_repeats_within_a_dump_merge(tmp_path: Path) -> None:
    text = (
        HEADER
        + "Dec 29\n\nSame Paper\n\nShort.\n\nSAME paper!\n\n"
        + ABSTRACT
        + "\n\n  • 3 authors\n·\nDec 1 4\n"
    )
    dump = parse_file(write(tmp_path / "d.txt", text), listing_date=date(2024, 12, 29))
    assert dump.entries == 2
    (paper,) = dump.papers
    assert paper.title == "Same Paper"  # the first title stays
    assert (paper.abstract, paper.author_count, paper.comments) == (ABSTRACT, 3, 4)


# --- titles and ids ----------------------------------------------------------------------


def test_title_key_ignores_case_spacing_and_punctuation() -> None:
    assert normalise_title("  Attention,  Please!  ") == "attention please"
    assert title_key("Attention, Please!") == title_key("attention please")
    assert title_key("ﬁne-tuning") == title_key("Fine tuning")  # NFKC folds the ligature
    assert title_key("A") != title_key("B")


# --- years -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("month", "day", "limit", "expected"),
    [
        (12, 29, date(2025, 1, 3), date(2024, 12, 29)),
        (1, 2, date(2025, 1, 3), date(2025, 1, 2)),
        (1, 3, date(2025, 1, 3), date(2025, 1, 3)),
        (2, 29, date(2025, 3, 1), date(2024, 2, 29)),
        (2, 29, date(2024, 2, 28), date(2020, 2, 29)),
    ],
)
def test_latest_on_or_before(month: int, day: int, limit: date, expected: date) -> None:
    assert latest_on_or_before(month, day, limit) == expected


def test_listing_year_from_modification_time(tmp_path: Path) -> None:
    text = HEADER + "Dec 29\n\nT\n\n" + ABSTRACT + "\n\n  • 2 authors\n·\nJan 2\n"
    path = write(tmp_path / "d.txt", text, mtime=date(2025, 1, 4))
    dump = parse_file(path)
    assert dump.listed_on == date(2024, 12, 29)
    # Jan 2 would land after the Dec 29 listing in 2024: it belongs to 2024 minus nothing:
    # the latest Jan 2 not after 2024-12-29 is 2024-01-02
    assert dump.papers[0].published_on == date(2024, 1, 2)
    # a file modified on the listing day itself keeps that year
    same_day = write(tmp_path / "e.txt", text, mtime=date(2024, 12, 29))
    assert parse_file(same_day).listed_on == date(2024, 12, 29)


def test_date_option_sets_the_year_and_must_agree(tmp_path: Path) -> None:
    text = HEADER + "Dec 29\n\nT\n\n" + ABSTRACT + "\n\n  • 2 authors\n·\nDec 30\n"
    path = write(tmp_path / "d.txt", text, mtime=date(2025, 6, 1))
    dump = parse_file(path, listing_date=date(2022, 12, 29))
    assert dump.listed_on == date(2022, 12, 29)
    # Dec 30 would land after the Dec 29 listing: the year before
    assert dump.papers[0].published_on == date(2021, 12, 30)
    with pytest.raises(IngestError) as info:
        parse_file(path, listing_date=date(2022, 12, 30))
    assert str(info.value) == (
        f"{path}:11: the listing date in the file (Dec 29) does not match --date 2022-12-30"
    )


def test_missing_listing_date_needs_date_option(tmp_path: Path) -> None:
    path = write(tmp_path / "d.txt", HEADER + "A Title\n\n" + ABSTRACT + "\n")
    with pytest.raises(IngestError) as info:
        parse_file(path)
    assert info.value.message == "no listing date (a line such as 'Dec 29') after the header"
    assert info.value.hint == "Pass the listing date with --date YYYY-MM-DD."
    dump = parse_file(path, listing_date=date(2024, 5, 1))
    assert [p.title for p in dump.papers] == ["A Title"]


# --- bad input ---------------------------------------------------------------------------


def _error(path: Path, **kw: object) -> IngestError:
    with pytest.raises(IngestError) as info:
        parse_file(path, **kw)  # type: ignore[arg-type]
    return info.value


def test_empty_and_blank_files(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.txt", "")
    assert str(_error(empty)) == f"{empty}: empty file"
    blank = write(tmp_path / "blank.txt", "\n  \n")
    assert str(_error(blank)) == f"{blank}: file holds only white space"


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 10)
    error = _error(path)
    assert str(error) == f"{path}: binary file, not a text or JSON dump"
    assert error.hint and "daily_papers API JSON" in error.hint


def test_latin1_file_is_decoded_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    text = HEADER + "Dec 29\n\nMemorize, Factorize, or be Naïve\n\nÀ propos des réseaux.\n"
    path.write_bytes(text.encode("latin-1"))
    dump = parse_file(path, listing_date=date(2024, 12, 29))
    (paper,) = dump.papers
    assert paper.title == "Memorize, Factorize, or be Naïve"
    assert paper.abstract == "À propos des réseaux."
    (warning,) = dump.warnings
    assert warning.startswith(f"{path}:13: not UTF-8 (byte 0xef); decoded as Windows-1252.")


def test_cut_off_after_a_title(tmp_path: Path) -> None:
    text = (SEEDS / "000_9d4c3e15241ae462.txt").read_text(encoding="utf-8")
    cut = text[: text.index("\n\nEntroPE: Entropy-Guided") + len("\n\nEntroPE: Entropy-Guided")]
    path = write(tmp_path / "cut.txt", cut)
    error = _error(path, listing_date=date(2024, 12, 29))
    assert str(error) == f"{path}:21: the dump ends after the title 'EntroPE: Entropy-Guided' " + (
        "with no abstract"
    )
    assert error.hint == "The file looks cut off; download or copy it again."


def test_cut_off_inside_metadata(tmp_path: Path) -> None:
    text = HEADER + "Dec 29\n\nT\n\n" + ABSTRACT + "\n\n  • 5 authors\n·"
    path = write(tmp_path / "cut.txt", text)
    error = _error(path, listing_date=date(2024, 12, 29))
    assert str(error) == f"{path}:13: the dump ends inside the metadata of 'T'"


def test_cut_off_mid_character(tmp_path: Path) -> None:
    path = tmp_path / "cut.txt"
    path.write_bytes((HEADER + "Dec 29\n\nNaïve\n\nAbstract and ï").encode("utf-8")[:-1])
    error = _error(path)
    assert str(error) == f"{path}:15: file ends in the middle of a character: it looks cut off"


def test_cut_off_mid_abstract_warns(tmp_path: Path) -> None:
    path = write(tmp_path / "cut.txt", HEADER + "Dec 29\n\nT\n\nWe propose a method that")
    dump = parse_file(path, listing_date=date(2024, 12, 29))
    assert dump.papers[0].abstract == "We propose a method that"
    assert dump.warnings == [
        f"{path}:15: the last abstract ends mid-sentence; the dump may be cut off "
        "(a complete copy will repair it later)."
    ]


def test_title_with_no_abstract_before_metadata() -> None:
    path = DUMPS / "no_abstract.txt"
    error = _error(path, listing_date=date(2024, 3, 14))
    assert str(error) == f"{path}:21: the paper 'A Paper With No Abstract' has no abstract"
    assert error.hint == "Every paper needs a title line, a blank line, then its abstract."


def test_title_with_no_abstract_in_a_dump_without_metadata(tmp_path: Path) -> None:
    long_abstract = ABSTRACT * 6
    text = HEADER + "Dec 29\n\nFirst\n\n" + long_abstract + "\n\nLonely Title\n\nThird Title\n\n"
    text += long_abstract + "\n"
    path = write(tmp_path / "slip.txt", text)
    error = _error(path, listing_date=date(2024, 12, 29))
    assert str(error) == f"{path}:21: expected a paper title, found {len(long_abstract)} " + (
        "characters of text"
    )
    assert error.hint is not None and "('Lonely Title', line 17) may have no abstract" in (
        error.hint
    )


def test_header_only(tmp_path: Path) -> None:
    path = write(tmp_path / "d.txt", HEADER + "Dec 29\n")
    assert _error(path).message == "no papers after the header"


def test_other_formats(tmp_path: Path) -> None:
    csv = write(tmp_path / "papers.csv", "id,title\n1,Attention\n")
    error = _error(csv)
    assert (
        str(error) == f"{csv}:1: not a papers listing: the file is a table (CSV), not a papers page"
    )
    assert error.hint is not None and "daily_papers API JSON" in error.hint
    html = write(tmp_path / "page.txt", "<!DOCTYPE html><html><body>Daily</body></html>")
    assert _error(html).message == (
        "not a papers listing: the file is text with no paper entries (no paper links, "
        "upvotes or 'Daily Papers' header)"
    )


def test_invalid_json(tmp_path: Path) -> None:
    path = write(tmp_path / "d.json", '[\n  {"paper": {"title": "T",\n   "summary": }}\n]')
    error = _error(path)
    assert str(error) == f"{path}:3: invalid JSON: Expecting value (column 15)"


@pytest.mark.parametrize(
    ("data", "where", "message"),
    [
        ({"foo": 1}, None, "JSON holds dict, not a list of daily_papers items"),
        ([], None, "the JSON list is empty: no papers"),
        ([1], "[0]", "expected an object, got int"),
        ([{"paper": {"summary": "S"}}], "[0].paper.title", "missing title"),
        ([{"paper": {"title": "T"}}], "[0].paper.summary", "missing summary"),
        (
            [{"paper": {"title": "T", "summary": "S", "upvotes": "many"}}],
            "[0].paper.upvotes",
            "expected a whole number >= 0, got 'many'",
        ),
        (
            [{"paper": {"title": "T", "summary": "S"}, "publishedAt": "yesterday"}],
            "[0].publishedAt",
            "expected an ISO date such as 2024-10-08, got 'yesterday'",
        ),
    ],
)
def test_json_of_the_wrong_shape(
    tmp_path: Path, data: object, where: str | None, message: str
) -> None:
    path = write(tmp_path / "d.json", json.dumps(data))
    error = _error(path)
    assert (error.field, error.message, error.file) == (where, message, str(path))


def test_path_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    assert str(_error(missing)) == f"{missing}: no such file or folder"


def test_file_over_the_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    with path.open("wb") as fh:
        fh.truncate(50 * 1024 * 1024)
    error = _error(path, max_bytes=10 * 1024 * 1024)
    assert str(error) == f"{path}: file is 50.0 MB, over the limit of 10 MB"
    assert error.hint and "ingest.max_file_mb" in error.hint


def test_fifty_megabyte_dump_parses(tmp_path: Path) -> None:
    """A 50 MB dump is under the default limit and is read whole."""
    entry = "A Paper Number {n}\n\n" + ABSTRACT * 10 + "\n\n  • 3 authors\n·\nDec 1\n\n"
    path = tmp_path / "big.txt"
    with path.open("w", encoding="utf-8") as fh:
        fh.write(HEADER + "Dec 29\n\n")
        n = 0
        while fh.tell() < 50 * 1024 * 1024:
            fh.write(entry.format(n=n))
            n += 1
    dump = parse_file(path, listing_date=date(2024, 12, 29))
    assert path.stat().st_size >= 50 * 1024 * 1024
    assert dump.entries == n and len(dump.papers) == n
    assert dump.papers[-1].title == f"A Paper Number {n - 1}"


def test_fifty_megabytes_of_garbage(tmp_path: Path) -> None:
    path = tmp_path / "junk.txt"
    path.write_bytes(b"lorem ipsum " * (50 * 1024 * 1024 // 12))
    assert _error(path).message.startswith("not a papers listing")
