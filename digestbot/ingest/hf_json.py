"""The Hugging Face ``daily_papers`` API JSON: a list of items, each with a ``paper``.

``[{"paper": {"id", "title", "summary", "upvotes", "publishedAt", "authors": [{"name"}],
"githubRepo"}, "publishedAt", "numComments", ...}]``; flat paper objects (the ``papers``
endpoint, API mirrors) are read too, authors as ``{name}`` objects or plain strings, and
envelopes such as ``{"date": "2026-10-03", "papers": [...]}``, whose date is the listing's.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ..errors import IngestError
from .checks import MAX_TITLE, READS
from .model import ParsedPaper, clean_text, title_key

ARXIV_ID = re.compile(r"\d{4}\.\d{4,5}")
_HINT = READS


# JSON starts with { or [, but so does a page whose first line is an upvote line "[-] 19", a
# Markdown link "[101](...)" or a reference link "[Title][3]"
_NOT_JSON = re.compile(r"\[\s*[-–]?\s*\]\s*(?:\d|[-–])|\[[^\]\n]*\][(\[]")


def is_json(head: str) -> bool:
    return head[:1] == "{" or (head[:1] == "[" and _NOT_JSON.match(head) is None)


def load_json(path: Path, text: str) -> Any:
    """The decoded JSON, or an IngestError saying where it is broken."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise IngestError(
            f"invalid JSON: {exc.msg} (column {exc.colno})",
            file=path,
            line=exc.lineno,
            hint="The file may be cut off or hand-edited; fetch it again from the API.",
        ) from None
    except RecursionError:
        raise IngestError(
            "JSON nested too deeply to be a papers listing",
            file=path,
            line=1,
            hint=_HINT,
        ) from None


def parse_json(
    path: Path, text: str, listing_date: date | None, mtime_date: date
) -> tuple[date, list[ParsedPaper], str, list[str]]:
    listed_on, papers, shape, warnings = read_items(path, load_json(path, text), "")
    return listing_date or listed_on or mtime_date, papers, shape, warnings


def read_items(
    path: Path, data: Any, where: str
) -> tuple[date | None, list[ParsedPaper], str, list[str]]:
    """Papers from decoded JSON at ``where``: a list of items, an envelope holding one, or
    a single item; the listing date from the envelope, else the items' usual one."""
    shape = "JSON list"
    envelope_date: date | None = None
    if isinstance(data, dict):
        # a single item, or an envelope holding the list
        for key in ("papers", "items", "data", "dailyPapers"):
            if isinstance(data.get(key), list):
                envelope_date = _day(path, f"{where}date", data.get("date"))
                data, where, shape = data[key], f"{where}{key}", "JSON envelope"
                break
        else:
            if "paper" in data or "title" in data:
                data, shape = [data], "JSON object"
    if not isinstance(data, list):
        raise IngestError(
            f"JSON holds {type(data).__name__}, not a list of daily_papers items",
            file=path,
            field=where or None,
            hint=_HINT,
        )
    if not data:
        raise IngestError("the JSON list is empty: no papers", file=path, hint=_HINT)
    papers: list[ParsedPaper] = []
    listed: list[date] = []
    warnings: list[str] = []
    for i, item in enumerate(data):
        paper, day = _item(path, f"{where}[{i}]", item)
        if len(paper.title) > MAX_TITLE:
            warnings.append(
                f"{path}: {where}[{i}].title: {len(paper.title)} characters; cut to {MAX_TITLE}"
            )
            paper.title = cut_title(paper.title)
            paper.key = title_key(paper.title)
        papers.append(paper)
        if day is not None:
            listed.append(day)
    if envelope_date is not None:
        return envelope_date, papers, shape, warnings
    if listed:
        # a page of one day's listing: its items share the date; take the usual one
        return Counter(listed).most_common(1)[0][0], papers, shape, warnings
    return None, papers, shape, warnings


def cut_title(title: str) -> str:
    """The title cut to MAX_TITLE characters at a word, marked with '…'."""
    return title[: MAX_TITLE - 1].rsplit(" ", 1)[0].rstrip() + "…"


def _bad(path: Path, where: str, message: str) -> IngestError:
    return IngestError(message, file=path, field=where, hint=_HINT)


def _item(path: Path, where: str, item: Any) -> tuple[ParsedPaper, date | None]:
    if not isinstance(item, dict):
        raise _bad(path, where, f"expected an object, got {type(item).__name__}")
    paper = item.get("paper", item)
    pwhere = f"{where}.paper" if "paper" in item else where
    if not isinstance(paper, dict):
        raise _bad(path, pwhere, f"expected an object, got {type(paper).__name__}")

    def text(name: str, required: bool, fallback: Any = None) -> str | None:
        value = paper.get(name, fallback)
        if value is None or value == "":
            if required:
                raise _bad(path, f"{pwhere}.{name}", f"missing {name}")
            return None
        if not isinstance(value, str):
            raise _bad(path, f"{pwhere}.{name}", f"expected text, got {type(value).__name__}")
        return clean_text(value)

    def count(obj: dict[str, Any], name: str, at: str) -> int | None:
        value = obj.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _bad(path, f"{at}.{name}", f"expected a whole number >= 0, got {value!r}")
        return value

    title = text("title", True, item.get("title"))
    abstract = text("summary", True, item.get("summary"))
    if not title:
        raise _bad(path, f"{pwhere}.title", "the title is empty")
    if not abstract:
        raise _bad(path, f"{pwhere}.summary", f"the paper {title!r} has no abstract")
    raw_id = paper.get("id")
    arxiv_id = raw_id if isinstance(raw_id, str) and ARXIV_ID.fullmatch(raw_id) else None
    authors_raw = paper.get("authors")
    authors: list[str] | None = None
    if authors_raw is not None:
        if not isinstance(authors_raw, list):
            raise _bad(path, f"{pwhere}.authors", "expected a list of {name: ...} objects")
        names = (a.get("name") if isinstance(a, dict) else a for a in authors_raw)
        authors = [clean_text(n) for n in names if isinstance(n, str) and n.strip()]
    github = paper.get("githubRepo")
    links = [f"https://huggingface.co/papers/{arxiv_id}"] if arxiv_id else []
    if isinstance(github, str) and github.startswith(("http://", "https://")):
        github = clean_text(github)[:500]
        links.append(github)
    else:
        github = None
    return (
        ParsedPaper(
            title=title,
            abstract=abstract,
            line=0,
            arxiv_id=arxiv_id,
            authors=authors,
            author_count=len(authors) if authors else None,
            published_on=_day(path, f"{pwhere}.publishedAt", paper.get("publishedAt")),
            upvotes=count(paper, "upvotes", pwhere),
            comments=count(item, "numComments", where),
            links=links,
            github_url=github,
            github_stars=count(paper, "githubStars", pwhere) if github else None,
        ),
        _day(path, f"{where}.publishedAt", item.get("publishedAt")) if "paper" in item else None,
    )


def _day(path: Path, where: str, value: Any) -> date | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(path, where, f"expected an ISO date, got {value!r}")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        raise _bad(path, where, f"expected an ISO date such as 2024-10-08, got {value!r}") from None
