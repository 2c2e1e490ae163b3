"""What every reader's digest shows of one paper, computed once per paper per process:
the cleaned and escaped fields (:class:`PaperView`) and its cards (see cards.py)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from operator import itemgetter
from typing import Any

from markupsafe import escape

from ..store import Paper
from . import links
from .cards import Card, slot, split
from .clean import clean_text, clean_title, first_sentences, shorten, word_index, wrap

MONTHS = (
    "January February March April May June July August September October November December"
).split()
WRAP = 72


_LONG_WORD = re.compile(r"[^\s\u200b]{31,}")


def breakable(text: str) -> str:
    """``text`` with a zero-width space every 24 characters of a very long word, where a
    narrow screen may wrap it (mail clients ignore the CSS that would break it)."""
    if len(text) <= 30 or not _LONG_WORD.search(text):
        return text
    return _LONG_WORD.sub(
        lambda m: "\u200b".join(m.group()[i : i + 24] for i in range(0, len(m.group()), 24)), text
    )


def paper_date(day: date) -> str:
    return f"{day.day} {MONTHS[day.month - 1][:3]} {day.year}"


@dataclass(slots=True, frozen=True, eq=False)
class PaperView:
    """What every reader's digest shows of one paper, computed once per paper per process.

    Compared and hashed by identity: a view is cached by its paper's fields, and its cards
    (``cards``, filled in by :func:`card`) hang off it."""

    paper_id: str
    upvotes: int | None
    url: str
    title: str
    title_wrapped: str
    meta: str
    meta_wrapped: str
    authors: str  # the first authors, "A, B, C et al."
    author_names: tuple[str, ...]  # the same names, one by one
    authors_wrapped: str
    abs_url: str  # arXiv abstract and PDF, "" without an arXiv id
    pdf_url: str
    code_url: str  # the GitHub repository, "" when none is known
    code_label: str  # "Code", or "Code (1.2k stars)"
    label: str  # the title, short, for the labels of a card's links
    snippet: str
    snippet_wrapped: str
    title_safe: str  # title and snippet HTML-escaped, and lowercased, for the highlighter
    title_low: str
    snippet_safe: str
    snippet_low: str
    title_index: dict[str, list[int]] | None
    snippet_index: dict[str, list[int]] | None
    cards: dict[Any, tuple[Card, Picker]] = field(default_factory=dict)
    sizes: list[int] = field(default_factory=list)  # see digest.papers_shown


FIRST_AUTHORS = 3


def paper_authors(paper: Paper) -> tuple[str, tuple[str, ...]]:
    """The first authors, then "et al." when there are more, or the author count when the
    listing gave no names; and those first authors' names one by one."""
    names = [shorten(n, 40) for n in (clean_text(a) for a in (paper.authors or [])) if n]
    count = max(paper.author_count or 0, len(names))
    first = tuple(names[:FIRST_AUTHORS])
    if not names:
        return (f"{count} author{'s' if count != 1 else ''}" if count else ""), first
    return ", ".join(first) + (" et al." if count > FIRST_AUTHORS else ""), first


def star_count(stars: int) -> str:
    """A star count as GitHub shows it: 950, 1.2k, 15k, 1.3M."""
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if stars >= size:
            value = f"{stars / size:.1f}".removesuffix(".0")
            return f"{value}{suffix}" if float(value) < 100 else f"{stars // size}{suffix}"
    return str(stars)


def code_label(paper: Paper) -> str:
    """The code link's words, with the repository's stars when a listing gave them."""
    stars = paper.github_stars
    if stars is None:
        return "Code"
    return f"Code ({star_count(stars)} star{'s' if stars != 1 else ''})"


def paper_meta(paper: Paper) -> str:
    parts: list[str] = []
    org = clean_text(paper.organization)
    if org:
        parts.append(shorten(org, 60))
    day = paper.published_on or paper.listed_on
    if day:
        parts.append(paper_date(day))
    if paper.upvotes is not None:
        parts.append(f"▲ {paper.upvotes} upvote{'s' if paper.upvotes != 1 else ''}")
    if paper.comments:
        parts.append(f"{paper.comments} comment{'s' if paper.comments != 1 else ''}")
    return " · ".join(parts)


_VIEWS: dict[tuple[Any, ...], PaperView] = {}
_VIEWS_MAX = 4096
_KEY_NAMES = (
    "id",
    "arxiv_id",
    "title",
    "abstract",
    "organization",
    "author_count",
    "published_on",
    "listed_on",
    "upvotes",
    "comments",
    "github_url",
    "github_stars",
    "authors",
)
_KEY_SET = frozenset(_KEY_NAMES)
_KEY_INDEX = {name: i for i, name in enumerate(_KEY_NAMES)}


def _view_key(paper: Paper) -> tuple[Any, ...]:
    state = paper.__dict__
    # loaded attributes straight from the instance: ORM descriptors cost ~0.3 µs each
    key = list(map(state.get, _KEY_NAMES))
    missing = _KEY_SET.difference(state)
    # not loaded (expired, deferred): ask the ORM; never set on a new, unsaved paper: None
    if missing and state["_sa_instance_state"].key is not None:
        for name in missing:
            key[_KEY_INDEX[name]] = getattr(paper, name)
    authors = key[-1]
    key[-1] = (len(authors), tuple(authors[:FIRST_AUTHORS])) if authors else 0
    return tuple(key)


def paper_view(paper: Paper) -> PaperView:
    """The reader-independent part of a paper's entry, cached: a run renders the same few
    hundred papers for every reader. The key holds every field shown, so an edit shows."""
    key = _view_key(paper)
    view = _VIEWS.get(key)
    if view is None:
        title = clean_title(paper.title)
        snippet = first_sentences(paper.abstract)
        title_safe, snippet_safe = str(escape(breakable(title))), str(escape(breakable(snippet)))
        authors, author_names = paper_authors(paper)
        meta = paper_meta(paper)
        view = PaperView(
            paper_id=paper.id,
            upvotes=paper.upvotes,
            url=links.paper_url(paper),
            title=title,
            title_wrapped=wrap(title, WRAP, first=""),
            meta=meta,
            meta_wrapped=wrap(meta, WRAP),
            authors=authors,
            author_names=author_names,
            authors_wrapped=wrap(authors, WRAP) if authors else "",
            abs_url=links.arxiv_url(paper, "abs"),
            pdf_url=links.arxiv_url(paper, "pdf"),
            code_url=links.code_url(paper),
            code_label=code_label(paper),
            label=shorten(title, 60),
            snippet=snippet,
            snippet_wrapped=wrap(snippet, WRAP) if snippet else "",
            title_safe=title_safe,
            title_low=title_safe.lower(),
            snippet_safe=snippet_safe,
            snippet_low=snippet_safe.lower(),
            title_index=word_index(title_safe, title_safe.lower()),
            snippet_index=word_index(snippet_safe, snippet_safe.lower()),
        )
        if len(_VIEWS) >= _VIEWS_MAX:
            _VIEWS.clear()
        _VIEWS[key] = view
    return view


def clear() -> None:
    _VIEWS.clear()  # the cards hang off the views


# Per-reader fields of a card, in the order the digest gives their values; everything else
# in a card depends on the paper alone.
READER_ORDER = (
    "rank",
    "title_html",
    "snippet_html",
    "scale",
    "relevance",
    "why",
    "why_wrapped",
    "more_url",
    "less_url",
)
READER_FIELDS = frozenset(READER_ORDER)
Picker = Callable[[Sequence[str]], Sequence[str]]


class _Slots:
    """What a card template sees when it is rendered once per paper: the paper's own
    fields, and for each reader's field a marker where the value will go."""

    __slots__ = ("view",)

    def __init__(self, view: PaperView) -> None:
        self.view = view

    def __getattr__(self, name: str) -> Any:
        if name in READER_FIELDS:
            return slot(name)
        return getattr(self.view, name)


def card(template: Any, view: PaperView, *, html: bool) -> tuple[Card, Picker]:
    """One paper's card (``_card.html.j2`` or ``_card.txt.j2``) rendered by Jinja once per
    paper per process, with a marker where each reader's field goes (see cards.py), and
    what picks the card's values from all of a reader's, given in ``READER_ORDER``."""
    found = view.cards.get(template)
    if found is None:
        rendered = template.render(e=_Slots(view))
        shown = split(rendered, READER_FIELDS, template.name, html=html)
        found = shown, _picker(tuple(READER_ORDER.index(name) for name in shown.names))
        view.cards[template] = found
    return found


def _picker(positions: tuple[int, ...]) -> Picker:
    if len(positions) == 1:
        only = positions[0]
        return lambda values: (values[only],)
    if not positions:
        return lambda values: ()
    return itemgetter(*positions)


@lru_cache(maxsize=8)
def static_card(template: Any) -> Card:
    """A template with no values (the divider between cards), rendered once."""
    return split(template.render(), frozenset(), template.name, html=True)
