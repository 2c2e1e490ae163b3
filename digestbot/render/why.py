"""Why a paper is in a reader's digest, in words, and the topic their subject line names."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

from markupsafe import escape

from ..scoring.picks import Pick
from ..store import Paper
from .clean import clean_title, clean_word, shorten


@lru_cache(maxsize=4096)
def _reasons(
    matched: tuple[str, ...],
    similar_title: str | None,
    respelled: tuple[tuple[str, str], ...] = (),
    for_meaning: bool = False,
) -> tuple[str, str] | None:
    """Why a pick is there, as text and HTML-escaped, or None when it says nothing: a
    reader's picks share a few keyword sets, so each is worded once per process."""
    reasons: list[str] = []
    words = [w for w in map(clean_word, matched) if w]
    if words:
        shown = ", ".join(f"“{shorten(m, 40)}”" for m in words[:3])
        more = f" and {len(words) - 3} more" if len(words) > 3 else ""
        noun = "keyword" if len(words) == 1 else "keywords"
        fixed = "".join(f" (matched '{used}' for '{typed}')" for typed, used in respelled)
        reasons.append(f"Matches your {noun} {shown}{more}{fixed}")
    if similar_title:
        reasons.append(f"Similar to “{clean_title(similar_title, 80)}”, which you liked")
    if for_meaning:
        # scoring.semantic let it in though none of the reader's words is in it
        reasons.append("Close in meaning to your interests, without your keywords")
    if not reasons:
        return None
    text = "; ".join(reasons)
    return text, str(escape(text))


def why_pair(upvotes: int | None, pick: Pick) -> tuple[str, str]:
    """Why a paper with ``upvotes`` is in the digest, as (text, HTML-escaped)."""
    found = _reasons(pick.matched, pick.similar_title, pick.respelled, pick.for_meaning)
    if found is not None:
        return found
    if upvotes:
        # the upvotes as a fact, not as a reason: popularity counts only when
        # scoring.popularity_weight says so, and the header says when it does
        text = f"Close to your interests overall ({upvotes} upvotes)"
    else:
        text = "Close to your interests overall"
    return text, text  # nothing to escape in either


def why_text(upvotes: int | None, pick: Pick) -> str:
    """:func:`why_pair`'s text alone."""
    return why_pair(upvotes, pick)[0]


def top_topic(entries: Sequence[tuple[Paper, Pick]]) -> str:
    """The keyword matched most often, earlier ranks breaking ties; else the top title."""
    found = _top_keyword(tuple(pick.matched for _, pick in entries))
    return found if found is not None else shorten(clean_title(entries[0][0].title), 50)


@lru_cache(maxsize=4096)
def _top_keyword(matches: tuple[tuple[str, ...], ...]) -> str | None:
    # readers' picks share a few keyword sets: each digest's are looked at once per process
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    for rank, matched in enumerate(matches):
        for word in map(clean_word, matched):
            if word:
                counts[word.lower()] += 1
                first.setdefault(word.lower(), rank)
    if not counts:
        return None
    best = min(counts, key=lambda w: (-counts[w], first[w]))
    for matched in matches:  # the reader's own spelling of it
        for word in matched:
            if clean_word(word).lower() == best:
                return shorten(clean_word(word), 50)
    return None


def clear() -> None:
    _reasons.cache_clear()
    _top_keyword.cache_clear()
