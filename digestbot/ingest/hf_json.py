"""The Hugging Face ``daily_papers`` API JSON: a list of items, each with a ``paper``.

``[{"paper": {"id", "title", "summary", "upvotes", "publishedAt", "authors": [{"name"}],
"githubRepo"}, "publishedAt", "numComments", ...}]``; flat paper objects (the ``papers``
endpoint) are read too.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ..errors import IngestError
from .model import ParsedPaper, clean_text

ARXIV_ID = re.compile(r"\d{4}\.\d{4,5}")
_HINT = (
    "digestbot reads the daily_papers API JSON: a list of items with "
    "paper{id,title,summary,...}; see the README."
)


def parse_json(
    path: Path, text: str, listing_date: date | None, mtime_date: date
) -> tuple[date, list[ParsedPaper]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IngestError(
            f"invalid JSON: {exc.msg} (column {exc.colno})",
            file=path,
            line=exc.lineno,
            hint="The file may be cut off or hand-edited; fetch it again from the API.",
        ) from None
    if isinstance(data, dict):
        # a single item, or an envelope holding the list
        for key in ("papers", "items", "data"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            data = [data] if "paper" in data or "title" in data else data
    if not isinstance(data, list):
        raise IngestError(
            f"JSON holds {type(data).__name__}, not a list of daily_papers items",
            file=path,
            hint=_HINT,
        )
    if not data:
        raise IngestError("the JSON list is empty: no papers", file=path, hint=_HINT)
    papers: list[ParsedPaper] = []
    listed: list[date] = []
    for i, item in enumerate(data):
        paper, day = _item(path, i, item)
        papers.append(paper)
        if day is not None:
            listed.append(day)
    if listing_date is not None:
        return listing_date, papers
    if listed:
        # a page of one day's listing: its items share the date; take the usual one
        return Counter(listed).most_common(1)[0][0], papers
    return mtime_date, papers


def _bad(path: Path, where: str, message: str) -> IngestError:
    return IngestError(message, file=path, field=where, hint=_HINT)


def _item(path: Path, i: int, item: Any) -> tuple[ParsedPaper, date | None]:
    where = f"[{i}]"
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
        authors = [
            clean_text(a["name"])
            for a in authors_raw
            if isinstance(a, dict) and isinstance(a.get("name"), str) and a["name"].strip()
        ]
    github = paper.get("githubRepo")
    links = [f"https://huggingface.co/papers/{arxiv_id}"] if arxiv_id else []
    if isinstance(github, str) and github.startswith(("http://", "https://")):
        github = github[:500]
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
