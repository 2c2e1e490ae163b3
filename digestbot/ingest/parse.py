"""From a file to a :class:`ParsedDump`: format detected by content, never by extension."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

from ..errors import IngestError
from .arxiv_atom import is_atom, parse_atom
from .hf_json import parse_json
from .hf_text import UPVOTE, TextParser, is_hf_text
from .model import ParsedDump, ParsedPaper, merge_fields
from .reading import DEFAULT_MAX_BYTES, RawDump, gc_paused, read_dump

_LEADING = re.compile("[\ufeff \t\r\n]*")
_HTML = re.compile(r"\s*<(!doctype|html|head|body)\b", re.I)


def detect_format(text: str) -> str | None:
    """ "hf-json", "hf-text", "arxiv-atom", or None for anything else."""
    # by position, not by lstrip() and split(): those would copy a whole 100 MB text
    start = _LEADING.match(text).end()  # type: ignore[union-attr]
    end = text.find("\n", start)
    first_line = text[start : end if end >= 0 else len(text)].strip()
    if is_atom(text, start):
        return "arxiv-atom"
    if text[start : start + 1] in "[{" and not UPVOTE.fullmatch(first_line):
        return "hf-json"
    if is_hf_text(text):
        return "hf-text"
    return None


# handed a dump's format, listing date and its next papers, as they are parsed
PapersHook = Callable[[str, date, list[ParsedPaper]], None]


def parse_raw(
    raw: RawDump,
    *,
    listing_date: date | None = None,
    on_papers: PapersHook | None = None,
    batch: int = 0,
) -> ParsedDump:
    """The dump's papers, repeats merged. With ``on_papers``, a page's papers go to it in
    batches (growing to ``batch``) as they are parsed, and the result holds only the last
    ones, with repeats not merged (JSON comes back whole)."""
    path = raw.path
    mtime_date = datetime.fromtimestamp(raw.mtime).date()
    fmt = detect_format(raw.text)
    if fmt == "hf-json":
        listed_on, papers = parse_json(path, raw.text, listing_date, mtime_date)
        warnings: list[str] = []
        entries = len(papers)
    elif fmt == "arxiv-atom":
        listed_on, papers = parse_atom(path, raw.data, listing_date, mtime_date)
        warnings, entries = [], len(papers)
    elif fmt == "hf-text":
        text = raw.text
        _drop_text(raw)  # the parser holds the text: not bytes and text
        hook: Callable[[list[ParsedPaper]], None] | None = None
        if on_papers is not None:
            send = on_papers

            def hook(papers: list[ParsedPaper]) -> None:
                assert parser.listed_on is not None
                send("hf-text", parser.listed_on, papers)

        # plain=None: control characters are looked for a segment of lines at a time
        parser = TextParser(
            path, text, listing_date, mtime_date, plain=None, on_papers=hook, batch=batch
        )
        del text
        papers = parser.parse()
        parser.feed.close()
        assert parser.listed_on is not None
        listed_on, warnings, entries = parser.listed_on, parser.warnings, parser.count
    else:
        what = "an HTML page" if _HTML.match(raw.text) else "in a format digestbot does not read"
        raise IngestError(
            f"not a Hugging Face Daily Papers dump: the file is {what}",
            file=path,
            line=1,
            hint="Give the Daily Papers page saved as text (it starts with 'Get trending "
            "papers in your email inbox!') or the daily_papers API JSON.",
        )
    _drop_text(raw)
    return ParsedDump(
        path=path,
        format=fmt,
        listed_on=listed_on,
        papers=papers if on_papers is not None else merge_repeats(papers),
        content_hash=raw.content_hash,
        entries=entries,
        warnings=raw.warnings + warnings,
    )


def parse_file(
    path: Path, *, listing_date: date | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> ParsedDump:
    """Read and parse one dump; raises :class:`IngestError` naming the file and line."""
    with gc_paused():
        return parse_raw(read_dump(Path(path), max_bytes=max_bytes), listing_date=listing_date)


def _drop_text(raw: RawDump) -> None:
    """Free the file's bytes and text once parsed: a 100 MB dump would otherwise be held
    three times over while it is written to the store."""
    raw.data = b""
    raw.text = ""


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
        changes = merge_fields(_fields(same), _fields(paper))
        for name, value in changes.items():
            setattr(same, name, value)
        if same.arxiv_id:
            by_arxiv[same.arxiv_id] = same
    return out


def _fields(paper: ParsedPaper) -> dict[str, object]:
    return {
        "arxiv_id": paper.arxiv_id,
        "abstract": paper.abstract,
        "authors": paper.authors,
        "author_count": paper.author_count,
        "organization": paper.organization,
        "published_on": paper.published_on,
        "upvotes": paper.upvotes,
        "comments": paper.comments,
        "links": paper.links,
        "github_url": paper.github_url,
    }
