"""Sanity checks on parsed papers: a dump whose entries are page text, not papers, is refused
rather than stored (a title holding a URL, Markdown or a navigation word; an abstract holding
the page's own text)."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import IngestError
from .model import ParsedPaper

READS = (
    "digestbot reads Hugging Face papers pages (daily, trending, search or a single paper) "
    "saved as text, Markdown or HTML, and the daily_papers API JSON (a list of items, or "
    "{date, papers: [...]}); see README 'Ingesting paper listings'."
)
MAX_TITLE = 300  # the seeds' longest is 142; a longer title is cut, with a warning

# words of the site's own navigation and furniture: never a paper's title
NAVIGATION = frozenset(
    {
        "hugging face",
        "models",
        "datasets",
        "spaces",
        "docs",
        "enterprise",
        "pricing",
        "log in",
        "login",
        "sign up",
        "subscribe",
        "new",
        "daily",
        "weekly",
        "monthly",
        "daily papers",
        "trending papers",
        "papers",
        "previous",
        "next",
        "load more",
        "system theme",
        "company",
        "website",
        "tos",
        "privacy",
        "about",
        "careers",
        "community",
        "collections",
        "posts",
        "buckets new",
        "upvote",
        "abstract",
        "authors",
        "view arxiv page",
        "view pdf",
        "add to collection",
        "get trending papers in your email inbox!",
        "get trending papers in your email inbox once a day!",
        "byak and the research community",
        "by ak and the research community",
    }
)
_URL = re.compile(r"https?://|www\.\w", re.I)  # looked for only when a "/" is there
_MARKDOWN = re.compile(r"\]\(|\]\[|!\[|^#{1,6}\s|^\s*[-*+]\s+\[|\*\*|^>\s")
# characters without which neither pattern can match: most titles skip both
_SUSPECT = frozenset("/][#*>")
# the page's own sentences (lower case): an abstract holding them swallowed the page
_PAGE_TEXT = (
    "get trending papers in your email inbox",
    "byak and the research community",
    "by ak and the research community",
)


def title_problem(title: str) -> str | None:
    if not _SUSPECT.isdisjoint(title):
        if _URL.search(title):
            return "a title holding a URL"
        if _MARKDOWN.search(title):
            return "a title holding Markdown"
    if title.strip(" #*:").casefold() in NAVIGATION:
        return "a title that is the site's navigation"
    return None


def _page_text(abstract: str) -> bool:
    # substring tests, not a regular expression: this runs on every abstract of a dump
    if "](http" in abstract:
        return True  # a Markdown link left in
    if "nbox" not in abstract and "ommunity" not in abstract:
        return False
    low = abstract.lower()
    return any(sentence in low for sentence in _PAGE_TEXT)


def check_papers(path: Path, shape: str, papers: list[ParsedPaper]) -> None:
    """Refuse the dump, naming its shape and the first bad entry, if an entry is not a paper."""
    for paper in papers:
        problem = title_problem(paper.title)
        if problem is None and _page_text(paper.abstract):
            problem = "an abstract holding the page's own text"
        if problem is not None:
            raise IngestError(
                f"the file looks like a {shape}, but its entries are not papers: "
                f"{problem}: {paper.title[:80]!r}",
                file=path,
                line=paper.line or None,
                hint="The page was captured in a shape digestbot does not take apart. " + READS,
            )
