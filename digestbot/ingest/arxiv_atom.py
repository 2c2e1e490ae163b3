"""The arXiv API's Atom feed (what ``digestbot fetch`` saves for the arxiv source).

``<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>http://arxiv.org/abs/2411.01234v2</id>
<published>…</published><title>…</title><summary>…</summary><author><name>…</name></author>
…</entry>…</feed>``. Parsed with :mod:`digestbot.xmlsafe` (no DTD, no entities). Papers
carry their arXiv id, so one listed by Hugging Face too is the same paper; the feed has no
upvotes or comment counts, so it never lowers Hugging Face's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ..errors import IngestError
from ..xmlsafe import UnsafeXML, parse_xml
from .model import ParsedPaper, clean_text

ATOM = "{http://www.w3.org/2005/Atom}"
_NAMESPACE = "http://www.w3.org/2005/Atom"
# http://arxiv.org/abs/2411.01234v2 (export API), oai:arXiv.org:2411.01234v1 (listing feeds)
_ID = re.compile(r"(?:arxiv\.org/abs/|arXiv\.org:)(\d{4}\.\d{4,5})(?:v\d+)?$", re.I)
_HINT = (
    "digestbot reads the arXiv API's Atom feed as `digestbot fetch` saves it "
    "(export.arxiv.org/api/query); see the README's Sources section."
)


def is_atom(text: str, start: int) -> bool:
    """Whether the text from ``start`` opens an Atom feed (only its head is looked at)."""
    head = text[start : start + 2048]
    return head.startswith("<") and "<feed" in head and _NAMESPACE in head


def parse_atom(
    path: Path, data: bytes, listing_date: date | None, mtime_date: date
) -> tuple[date, list[ParsedPaper]]:
    """The feed's papers, and its listing date: ``listing_date`` if given, else the newest
    submission in it (a feed is one day's or the latest submissions)."""
    try:
        root = parse_xml(data)
    except UnsafeXML as exc:
        raise IngestError(f"Atom feed refused: {exc}", file=path, hint=_HINT) from None
    if root.tag != f"{ATOM}feed":
        raise IngestError(f"not an Atom feed: the root is <{root.tag}>", file=path, hint=_HINT)
    papers: list[ParsedPaper] = []
    for i, entry in enumerate(root.iterfind(f"{ATOM}entry")):
        papers.append(_entry(path, i, entry))
    if not papers:
        raise IngestError("the Atom feed holds no entries: no papers", file=path, hint=_HINT)
    if not any(p.arxiv_id for p in papers):
        raise IngestError(
            "an Atom feed, but not from arXiv: no entry has an arxiv.org/abs/ id",
            file=path,
            hint=_HINT,
        )
    if listing_date is not None:
        return listing_date, papers
    published = [p.published_on for p in papers if p.published_on is not None]
    if published:
        return max(published), papers
    updated = _day(path, "feed.updated", root.findtext(f"{ATOM}updated"), root.sourceline)
    return updated or mtime_date, papers


def _entry(path: Path, i: int, entry: Any) -> ParsedPaper:
    where, line = f"entry[{i}]", entry.sourceline or 0
    raw_id = (entry.findtext(f"{ATOM}id") or "").strip()
    if "/api/errors" in raw_id:
        # the API answers a bad query with a feed of one "Error" entry
        reason = clean_text(entry.findtext(f"{ATOM}summary") or "") or "no reason given"
        raise IngestError(f"the feed is an arXiv API error: {reason}", file=path, line=line)

    def text(name: str) -> str:
        value = clean_text(entry.findtext(f"{ATOM}{name}") or "")
        if not value:
            raise IngestError(
                f"missing {name}" if name == "title" else "the paper has no abstract",
                file=path,
                line=line,
                field=f"{where}.{name}",
                hint=_HINT,
            )
        return value

    title, abstract = text("title"), text("summary")
    match = _ID.search(raw_id)
    arxiv_id = match.group(1) if match else None
    authors = list(_authors(entry))
    return ParsedPaper(
        title=title,
        abstract=abstract,
        line=line,
        arxiv_id=arxiv_id,
        authors=authors or None,
        author_count=len(authors) or None,
        published_on=_day(path, f"{where}.published", entry.findtext(f"{ATOM}published"), line),
        links=[f"https://arxiv.org/abs/{arxiv_id}"] if arxiv_id else [],
    )


def _authors(entry: Any) -> Iterator[str]:
    for author in entry.iterfind(f"{ATOM}author"):
        name = clean_text(author.findtext(f"{ATOM}name") or "")
        if name:
            yield name


def _day(path: Path, where: str, value: str | None, line: int | None) -> date | None:
    if value is None or not value.strip():
        return None
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).date()
    except ValueError:
        raise IngestError(
            f"expected an ISO date such as 2026-11-20T18:59:59Z, got {value.strip()!r:.60}",
            file=path,
            line=line,
            field=where,
            hint=_HINT,
        ) from None
