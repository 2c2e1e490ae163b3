"""The ingest stage's fast paths give exactly what the general paths give."""

from __future__ import annotations

import gc
import hashlib
import random
import re
import unicodedata
from datetime import date, datetime
from pathlib import Path

import pytest

from digestbot.ingest import lines, normalise_title, parse_file, title_key
from digestbot.ingest.hf_text import TextParser
from digestbot.ingest.lines import LineFeed
from digestbot.ingest.model import clean_text
from digestbot.ingest.page import read_page
from digestbot.ingest.parse import detect_format
from digestbot.ingest.reading import free_of_controls, gc_paused, read_dump

from .conftest import SEEDS

DUMPS = Path(__file__).resolve().parent / "data" / "dumps"
_NOT_WORD = re.compile(r"[\W_]+")


def _general_normalise(title: str) -> str:
    return _NOT_WORD.sub(" ", unicodedata.normalize("NFKC", title).casefold()).strip()


def _random_texts(n: int, alphabet: str, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(alphabet, k=rng.randint(0, 40))) for _ in range(n)]


def test_ascii_title_normalisation_matches_the_general_rule() -> None:
    ascii_chars = "".join(map(chr, range(128)))
    texts = _random_texts(3000, ascii_chars, 1) + _random_texts(3000, "aB _-.:,9 \t", 2)
    texts += ["", "  ", "A  B", "__init__", "GPT-4o: 100% (v2)!", "x\x00y", "\x7fTail "]
    for text in texts:
        assert text.isascii()
        assert normalise_title(text) == _general_normalise(text), repr(text)
        general_key = hashlib.sha256(_general_normalise(text).encode()).hexdigest()
        assert title_key(text) == general_key, repr(text)
    assert normalise_title("Naïve  Bayes — Ⅸ") == _general_normalise("Naïve  Bayes — Ⅸ")


def test_plain_clean_text_matches_the_general_rule() -> None:
    # what `plain` promises: no control characters (a file checked at once)
    texts = _random_texts(3000, "ab  c.", 3) + _random_texts(500, "aé\u00a0\u2003 x", 4)
    texts += ["", " ", "  lead", "trail  ", "a  b   c", "Naïve\u00a0 Bayes", "x\u200by"]
    for text in texts:
        assert clean_text(text, plain=True) == clean_text(text), repr(text)


def test_free_of_controls() -> None:
    assert free_of_controls("Title\n\nAbstract • · é\r\n".encode())
    assert free_of_controls(b"")
    for control in (b"\t", b"\x00", b"\x0b", b"\x0c", b"\x1b", b"\x1f", b"\x7f"):
        assert not free_of_controls(b"Title " + control + b" end\n")
    assert not free_of_controls("Title\n".encode("utf-16"))  # bytes of another encoding


def test_text_dumps_parse_the_same_with_and_without_the_plain_path() -> None:
    paths = [*sorted(SEEDS.iterdir()), DUMPS / "hf_page_real.txt"]
    for path in paths:
        raw = read_dump(path)
        assert detect_format(raw.text).name == "hf-text"
        mtime = datetime.fromtimestamp(raw.mtime).date()
        general = TextParser(path, raw.text, None, mtime).parse()
        fast = TextParser(path, raw.text, None, mtime, plain=free_of_controls(raw.data)).parse()
        assert fast == general, path


def test_lines_come_in_segments_as_one_split_gives_them() -> None:
    texts = _random_texts(300, "ab\n\n x\t", 5) + ["", "\n", "a\n", "\na", "a\n\nb\n"]
    for text in texts:
        for size in (1, 2, 3, 7, 100):
            feed = LineFeed(text, check_controls=True, size=size)
            lines = feed.lines[:]
            while feed.advance():
                lines += feed.lines
            assert lines == text.split("\n"), (text, size)
            assert feed.plain is ("\t" not in text), (text, size)
            assert feed.final
            # looking ahead while going through the lines changes nothing
            feed = LineFeed(text, check_controls=False, size=size)
            numbered = []
            for i, line in feed.numbered(0):
                numbered.append((i, line))
                if i % 3 == 0:
                    feed.append()
                assert feed.lines[i - feed.base] == line
            assert numbered == list(enumerate(text.split("\n"))), (text, size)


@pytest.mark.parametrize("size", [1, 50, 3000])
def test_text_dumps_parse_the_same_a_segment_at_a_time(
    size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    header = (
        "new\n\nGet trending papers in your email inbox!\n\nDaily Papers\n\n"
        "byAK and the research community\n\nDec 29\n\n"
    )
    # control characters first found far into the dump, inside a paragraph
    controls = header + "A Title\n\nAn abstract.\n\n" * 40 + "T\tx\n\nAb\x0bs\n\n"
    texts = [
        read_dump(path).text for path in [*sorted(SEEDS.iterdir()), DUMPS / "hf_page_real.txt"]
    ]
    mtime = date(2025, 1, 1)
    for text in [*texts, controls]:
        whole = TextParser(Path("d.txt"), text, None, mtime).parse()
        monkeypatch.setattr(lines, "SEGMENT", size)
        segmented = TextParser(Path("d.txt"), text, None, mtime, plain=None).parse()
        monkeypatch.undo()
        assert segmented == whole


def test_a_file_with_tabs_and_double_spaces_is_cleaned(tmp_path: Path) -> None:
    header = (
        "new\n\nGet trending papers in your email inbox!\n\nDaily Papers\n\n"
        "byAK and the research community\n\nDec 29\n\n"
    )
    path = tmp_path / "d.txt"
    for sep in ("\t", "  ", "\u00a0 "):
        path.write_text(header + f"A{sep}Title\n\nAn{sep}abstract.\n", encoding="utf-8")
        (paper,) = parse_file(path, listing_date=date(2024, 12, 29)).papers
        assert (paper.title, paper.abstract) == ("A Title", "An abstract.")


def test_format_detection_reads_only_the_head() -> None:
    head = "new\n\nGet trending papers in your email inbox!\n\n"
    assert read_page(head + "x\n" * 100_000).looks_like_listing
    assert not read_page("\n".join(["noise"] * 500) + "\n" + head).looks_like_listing
    assert detect_format("\ufeff \n" + head).name == "hf-text"
    assert detect_format('\n\n[{"paper": {}}]').name == "hf-json"
    assert detect_format('{"date": "2026-10-03", "papers": []}').name == "hf-json"
    assert detect_format("[-] 19\n\n" + head).name == "hf-text"
    assert detect_format("[101](https://huggingface.co/login)\n\n" + head).name == "hf-text"
    assert detect_format("<!DOCTYPE html><html></html>").name == "hf-html"


@pytest.mark.parametrize("enabled", [True, False])
def test_gc_paused_restores_the_collector(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        with pytest.raises(RuntimeError), gc_paused():
            assert not gc.isenabled()
            raise RuntimeError
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()
