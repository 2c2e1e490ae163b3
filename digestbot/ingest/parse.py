"""From a file to a :class:`ParsedDump`: format detected by content, never by extension.

:data:`FORMATS` lists the formats digestbot reads, in the order they are tried: the first
whose ``detect`` accepts the text's head parses it. A new source adds one entry.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from ..errors import IngestError
from .arxiv_atom import is_atom, parse_atom
from .checks import READS, check_papers
from .hf_html import is_html, parse_html
from .hf_json import is_json, parse_json
from .hf_text import parse_text
from .model import ParsedDump, ParsedPaper, merge_fields, merged_values
from .reading import DEFAULT_MAX_BYTES, RawDump, gc_paused, read_dump

_LEADING = re.compile("[\ufeff \t\r\n]*")


# (path, text, --date, a date the listing is not after) -> (listed_on, papers, shape,
# warnings), the shape saying what the file looked like, for messages ("Markdown page")
Parser = Callable[[Path, str, date | None, date], tuple[date, list[ParsedPaper], str, list[str]]]


@dataclass(frozen=True)
class Format:
    name: str
    detect: Callable[[str], bool]  # handed the text from its first non-blank character
    parse: Parser


def _atom(
    path: Path, text: str, given: date | None, limit: date
) -> tuple[date, list[ParsedPaper], str, list[str]]:
    # lxml reads the encoding the feed declares, so it gets bytes
    listed_on, papers = parse_atom(path, text.encode("utf-8"), given, limit)
    return listed_on, papers, "arXiv Atom feed", []


FORMATS: list[Format] = [
    Format("hf-json", is_json, parse_json),
    Format("arxiv-atom", lambda head: is_atom(head, 0), _atom),
    Format("hf-html", is_html, parse_html),
    # last: any other text is read as a papers page, which refuses what is not one
    Format("hf-text", lambda head: True, parse_text),
]


def detect_format(text: str) -> Format | None:
    """The first format in :data:`FORMATS` that takes the text."""
    # by position, not lstrip(): that would copy a whole 100 MB text
    start = _LEADING.match(text).end()  # type: ignore[union-attr]
    head = text[start : start + 4096]
    return next((f for f in FORMATS if f.detect(head)), None)


def parse_raw(raw: RawDump, *, listing_date: date | None = None) -> ParsedDump:
    """The dump's papers, repeats merged."""
    path = raw.path
    limit = datetime.fromtimestamp(raw.mtime).date()
    fmt = detect_format(raw.text)
    if fmt is None:
        raise IngestError(
            "not a papers listing: the file is in a format digestbot does not read",
            file=path,
            line=1,
            hint=READS,
        )
    text = raw.text
    # the parser holds the text, not bytes and text: a 100 MB dump would otherwise be held
    # three times over while it is written to the store
    raw.data = b""
    raw.text = ""
    listed_on, papers, shape, warnings = fmt.parse(path, text, listing_date, limit)
    del text
    check_papers(path, shape, papers)
    return ParsedDump(
        path=path,
        format=fmt.name,
        listed_on=listed_on,
        papers=merge_repeats(papers),
        content_hash=raw.content_hash,
        entries=len(papers),
        warnings=raw.warnings + warnings,
    )


def parse_file(
    path: Path, *, listing_date: date | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> ParsedDump:
    """Read and parse one dump; raises :class:`IngestError` naming the file and line."""
    with gc_paused():
        return parse_raw(read_dump(Path(path), max_bytes=max_bytes), listing_date=listing_date)


def merge_repeats(papers: list[ParsedPaper]) -> list[ParsedPaper]:
    """One record per paper within a dump, keeping the first position and the best facts."""
    by_key: dict[str, ParsedPaper] = {}
    by_arxiv: dict[str, ParsedPaper] = {}
    out: list[ParsedPaper] = []
    for paper in papers:
        same = by_arxiv.get(paper.arxiv_id) if paper.arxiv_id else None
        if same is None:
            same = by_key.get(paper.key)
            if same is not None and same.arxiv_id and paper.arxiv_id != same.arxiv_id:
                same = None if paper.arxiv_id else same
        if same is None:
            out.append(paper)
            by_key.setdefault(paper.key, paper)
            if paper.arxiv_id:
                by_arxiv[paper.arxiv_id] = paper
            continue
        changes = merge_fields(merged_values(same), merged_values(paper))
        for name, value in changes.items():
            setattr(same, name, value)
        if same.arxiv_id:
            by_arxiv[same.arxiv_id] = same
    return out
