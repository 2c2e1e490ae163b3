"""Feeds from pieces feedgen wrote once: the per-reader fast path of ``subscriber_feeds``.

A run writes every feed reader's RSS and Atom files, and feedgen builds an lxml tree for
each (two hundred elements a pair). Most of a feed is the same for every reader: the entry
of a paper differs only in the "why" line, the categories and the dates. So feedgen writes
each paper's entry once, and the document around the entries once, with a marker where a
reader's value goes; a reader's feed is the pieces filled with their values, escaped as
lxml escapes text and attribute values. The same technique as the email cards
(``cards.py``); tests hold the result byte-identical to feedgen's own output.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from feedgen.feed import FeedGenerator
from feedgen.util import formatRFC2822

from .views import PaperView

MARK = "\ue000"  # a private-use character; a skeleton that holds one elsewhere is refused
_SENTINEL = datetime(1901, 2, 3, 4, 5, 6, tzinfo=UTC)  # stands for a reader's date
_SENTINEL_FEED = datetime(1902, 3, 4, 5, 6, 7, tzinfo=UTC)  # the feed's own date
_DATES = {
    "rss": (formatRFC2822(_SENTINEL), formatRFC2822(_SENTINEL_FEED)),
    "atom": (_SENTINEL.isoformat(), _SENTINEL_FEED.isoformat()),
}


def slot(name: str) -> str:
    return f"{MARK}{name}{MARK}"


@lru_cache(maxsize=16384)
def text(value: str) -> str:
    """A value as lxml writes it in element text (the same few values recur: cached)."""
    return (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


@lru_cache(maxsize=4096)
def attribute(value: str) -> str:
    """A value as lxml writes it inside a double-quoted attribute."""
    return text(value).replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;")


@dataclass(slots=True, frozen=True)
class XmlPiece:
    """Serialised XML with a marker where each value goes: ``statics`` around ``names``.
    A name that sits in an attribute ends in ``@``: its value is escaped as one."""

    statics: tuple[str, ...]
    names: tuple[str, ...]

    def fill(self, values: Mapping[str, str], out: list[str]) -> None:
        """Append the piece to ``out``, with ``values`` escaped as their names say."""
        parts: list[str] = [""] * (2 * len(self.names) + 1)
        parts[::2] = self.statics
        parts[1::2] = [values[name] for name in self.names]
        out.extend(parts)


class _Uncut(Exception):
    """feedgen's output could not be cut at its markers (a paper's text held one)."""


def _piece(xml: str, names: set[str]) -> XmlPiece:
    """``xml`` split at its markers; :class:`_Uncut` if a marker is not one of ``names``
    (a paper's own text held the marker character)."""
    parts = xml.split(MARK)
    found = tuple(parts[1::2])
    if len(parts) % 2 == 0 or not set(found) <= names:
        raise _Uncut
    statics = tuple(parts[::2])
    # a value filling an attribute follows its opening quote; text follows a tag
    named = tuple(n + "@" if s.endswith('"') else n for s, n in zip(statics, found, strict=False))
    return XmlPiece(statics, named)


def escaped(values: Mapping[str, str]) -> dict[str, str]:
    """``values`` escaped for element text, and under ``name@`` for an attribute."""
    out = {name: text(value) for name, value in values.items()}
    out.update({name + "@": attribute(value) for name, value in values.items()})
    return out


def documents(fg: FeedGenerator) -> tuple[bytes, bytes]:
    """``fg`` as (RSS, Atom). Its links are the Atom file's (self: the ``.atom`` URL); the
    RSS file gets its own self link (``.rss``), and its channel ``<link>`` the site's page
    (feedgen takes the last link added for it)."""
    atom = fg.atom_str(pretty=True)
    saved = [dict(link) for link in fg.link()]
    rss_links = [
        {**link, "href": link["href"][: -len(".atom")] + ".rss"}
        if link.get("rel") == "self" and link["href"].endswith(".atom")
        else link
        for link in saved
    ]
    rss_links.sort(key=lambda link: link.get("rel", "alternate") == "alternate")
    fg.link(rss_links, replace=True)
    rss = fg.rss_str(pretty=True)
    fg.link(saved, replace=True)
    return rss, atom


_ENTRY_OPEN = {"rss": "    <item>", "atom": "  <entry>"}
_ENTRY_CLOSE = {"rss": "</item>\n", "atom": "</entry>\n"}


def _cut(fg: FeedGenerator) -> dict[str, tuple[str, str, str]]:
    """Each kind of ``fg``'s document, which has a single entry, as (before, the entry,
    after), with markers where the sentinel dates were."""
    out = {}
    for kind, data in zip(("rss", "atom"), documents(fg), strict=True):
        entry_date, feed_date = _DATES[kind]
        xml = data.decode("utf-8").replace(entry_date, slot("when"))
        xml = xml.replace(feed_date, slot("newest"))
        start = xml.find(_ENTRY_OPEN[kind])
        end = xml.find(_ENTRY_CLOSE[kind], start)
        if start < 0 or end < 0 or xml.find(_ENTRY_OPEN[kind], start + 1) >= 0:
            raise _Uncut
        end += len(_ENTRY_CLOSE[kind])
        out[kind] = xml[:start], xml[start:end], xml[end:]
    return out


# (fg, view, why, when, categories): adds one paper's entry to fg
EntryWriter = Callable[[FeedGenerator, PaperView, str, datetime, Sequence[str]], None]
# (feed_id, description, self_url): a FeedGenerator with the feed's own elements
HeadWriter = Callable[[str, str, str], FeedGenerator]

# The why line goes into the Atom summary as it is and, HTML-escaped, into the RSS
# description and Atom content: its marker's name has an "&" so the two come out apart
# (and lxml escapes the "&" once more, in both).
WHY = "why&"
WHY_RAW, WHY_HTML = "why&amp;", "why&amp;amp;"
CATEGORIES = 5
CATEGORY = tuple(f"cat{i}" for i in range(CATEGORIES))  # in element text (RSS)
CATEGORY_ATTRIBUTE = tuple(f"cat{i}@" for i in range(CATEGORIES))  # in an attribute (Atom)
_HEAD_NAMES = {"feed_id", "description", "self_url", "newest"}
_ENTRY_NAMES = {WHY_RAW, WHY_HTML, "when", *(f"cat{i}" for i in range(CATEGORIES))}

# A reader's feed documents around their entries: kind -> (before, after)
Frame = dict[str, tuple[XmlPiece, XmlPiece]]

_FRAMES: dict[Any, Frame | None] = {}
_ENTRIES: dict[Any, dict[str, XmlPiece] | None] = {}
_ENTRIES_MAX = 16384


def frame(key: Any, head: HeadWriter, write: EntryWriter, dummy: PaperView) -> Frame | None:
    """The documents around the entries, written by ``head`` with markers and the entry
    of ``dummy`` to cut out (None if feedgen's output cannot be cut); cached under ``key``."""
    if key in _FRAMES:
        return _FRAMES[key]
    fg = head(slot("feed_id"), slot("description"), slot("self_url"))
    write(fg, dummy, "", _SENTINEL, ())
    fg.updated(_SENTINEL_FEED)
    fg.lastBuildDate(_SENTINEL_FEED)
    found: Frame | None
    try:
        found = {
            kind: (_piece(before, _HEAD_NAMES), _piece(after, _HEAD_NAMES))
            for kind, (before, _, after) in _cut(fg).items()
        }
    except _Uncut:
        found = None
    _FRAMES[key] = found
    return found


def entry(
    view: PaperView, write: EntryWriter, has_why: bool, categories: int
) -> dict[str, XmlPiece] | None:
    """One paper's entry per kind, written by ``write`` with markers, for a reader with
    (``has_why``) or without a why line and ``categories`` categories; None if it cannot be
    cut (the paper's text holds the marker character). Cached per view."""
    key = (view, has_why, categories)
    try:
        return _ENTRIES[key]
    except KeyError:  # the first reader of this paper, with as many categories
        pass
    fg = FeedGenerator()
    fg.id("x")
    fg.title("x")
    fg.link(href="x.atom", rel="self")
    fg.description("x")
    cats = [slot(f"cat{i}") for i in range(categories)]
    write(fg, view, slot(WHY) if has_why else "", _SENTINEL, cats)
    found: dict[str, XmlPiece] | None
    try:
        found = {kind: _piece(one, _ENTRY_NAMES) for kind, (_, one, _) in _cut(fg).items()}
    except _Uncut:
        found = None
    if len(_ENTRIES) >= _ENTRIES_MAX:
        _ENTRIES.clear()
    _ENTRIES[key] = found
    return found


@lru_cache(maxsize=1024)
def dates(when: datetime) -> tuple[str, str]:
    """A date as RSS and as Atom write it."""
    return formatRFC2822(when), when.isoformat()


@lru_cache(maxsize=4096)
def why_html(why: str) -> str:
    return html.escape(why, quote=False)


def clear() -> None:
    _FRAMES.clear()
    _ENTRIES.clear()
