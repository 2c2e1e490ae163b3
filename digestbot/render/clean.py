"""Untrusted paper text made safe to show: no control characters, bounded length.

Titles and abstracts come from scraped listings. Whatever they contain, what reaches a
header, an XML feed or a terminal must be printable: XML 1.0 forbids most C0 controls, a
stray CR/LF in a header is an injection, and bidi overrides can make a title display text
that is not there. Escaping for HTML or XML is the templates' and feedgen's job, not ours.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

from markupsafe import Markup, escape

# C0 and C1 controls (tab/newline become spaces first), DEL, the bidi embedding/override/
# isolate controls, surrogates and the two noncharacters XML 1.0 refuses.
_BAD = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]")
_SPACE = re.compile(r"\s+")
_WORD_RUN = re.compile(r"\w+")  # \w is exactly isalnum() or "_", the rule below
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'“])")

TITLE_LIMIT = 300
SNIPPET_LIMIT = 360


def clean_text(value: str | None) -> str:
    """One line of printable text: whitespace runs collapsed, controls removed."""
    if not value:
        return ""
    # already clean (the common case, and cheap to tell): every character the
    # expressions touch but the single inner space is unprintable to isprintable()
    if value.isprintable() and "  " not in value and value[0] != " " and value[-1] != " ":
        return value
    return _BAD.sub("", _SPACE.sub(" ", value)).strip()


@lru_cache(maxsize=16384)
def clean_word(value: str) -> str:
    """:func:`clean_text` for keywords: few distinct values, looked up once per paper."""
    return clean_text(value)


def shorten(value: str, limit: int) -> str:
    """Cut at a word boundary, with an ellipsis, when longer than ``limit``."""
    if len(value) <= limit:
        return value
    cut = value[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"


def clean_title(value: str | None, limit: int = TITLE_LIMIT) -> str:
    return shorten(clean_text(value), limit) or "(untitled)"


def first_sentences(abstract: str | None, count: int = 2, limit: int = SNIPPET_LIMIT) -> str:
    """The opening sentences of an abstract, enough to decide whether to click."""
    text = clean_text(abstract)
    if not text:
        return ""
    parts = _SENTENCE.split(text, maxsplit=count)
    return shorten(" ".join(parts[:count]), limit)


class Highlighter:
    """Finds a reader's keywords in text as whole words, case-insensitively.

    Plain ``str.find`` per keyword: compiling a regex per reader cost more than the rest
    of rendering their digest.
    """

    def __init__(self, keywords: Iterable[str]) -> None:
        cleaned = {clean_word(k).lower() for k in keywords}
        self.words = sorted((w for w in cleaned if w), key=len, reverse=True)
        self.escaped_words = [str(escape(w)) for w in self.words]
        # one run of word characters: its matches are exactly the equal runs in the text
        self.simple = [w for w in self.escaped_words if _WORD_RUN.fullmatch(w)]
        self.other = [w for w in self.escaped_words if not _WORD_RUN.fullmatch(w)]

    @staticmethod
    @lru_cache(maxsize=4096)
    def cached(keywords: frozenset[str]) -> Highlighter:
        """A shared highlighter for these keywords: readers share a few sets, and one
        is never changed after it is made."""
        return Highlighter(keywords)

    def mark(self, text: str, open_tag: str, close_tag: str) -> Markup:
        """``text`` HTML-escaped, each keyword wrapped in the given tags."""
        safe = str(escape(text))
        return Markup(self.mark_str(safe, safe.lower(), open_tag, close_tag))

    def mark_str(
        self,
        safe: str,
        low: str,
        open_tag: str,
        close_tag: str,
        index: dict[str, list[int]] | None = None,
    ) -> str:
        """:meth:`mark` for text already HTML-escaped (``safe``) and lowercased (``low``),
        as a plain string: digests compute both once per paper, not once per reader, and
        with them ``index = word_index(safe, low)``, where one-word keywords are looked up
        (making a Markup twice per paper per reader cost more than finding the keywords)."""
        if not self.words:
            return safe
        if index is None:
            spans = self._spans(safe, low, self.escaped_words)
        else:
            found = self._spans(safe, low, self.other) if self.other else []
            for word in self.simple:
                starts = index.get(word)
                if starts:
                    size = len(word)
                    found += [(start, start + size) for start in starts]
            if self.other:
                spans = _non_overlapping(found)
            else:  # whole runs of word characters never overlap
                found.sort()
                spans = found
        if not spans:
            return safe
        out: list[str] = []
        last = 0
        for start, end in spans:
            out += (safe[last:start], open_tag, safe[start:end], close_tag)
            last = end
        out.append(safe[last:])
        return "".join(out)

    @staticmethod
    def _spans(safe: str, low: str, words: list[str]) -> list[tuple[int, int]]:
        """Where the (escaped) keywords are in HTML-escaped text, never inside a character
        reference."""
        size = len(low)
        if size != len(safe):  # lower() changed lengths (e.g. "İ"): offsets would drift
            return []
        found: list[tuple[int, int]] = []
        for word in words:
            start = low.find(word)
            length = len(word)
            while start >= 0:
                end = start + length
                if start:
                    before = low[start - 1]
                    ok = not before.isalnum() and before not in "&#_"
                else:
                    ok = True
                if ok and end < size:
                    after = low[end]
                    ok = not after.isalnum() and after != "_"
                if ok:
                    found.append((start, end))
                start = low.find(word, start + 1)
        return _non_overlapping(found)


def _non_overlapping(found: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The spans in text order, the longest first where several start together, and none
    overlapping one kept before it."""
    if len(found) < 2:
        return found
    found.sort(key=lambda span: (span[0], span[0] - span[1]))
    kept = [found[0]]
    for span in found:
        if span[0] >= kept[-1][1]:
            kept.append(span)
    return kept


def word_index(safe: str, low: str) -> dict[str, list[int]] | None:
    """Where each run of word characters starts in ``low`` (``safe`` lowercased), leaving
    out character references' names (after ``&`` or ``#``); None when lowercasing changed
    the length (no highlights then, as :meth:`Highlighter.mark_str` makes none)."""
    if len(low) != len(safe):
        return None
    index: dict[str, list[int]] = {}
    for match in _WORD_RUN.finditer(low):
        start = match.start()
        if start and low[start - 1] in "&#":
            continue
        index.setdefault(match.group(), []).append(start)
    return index


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal: wide (CJK) characters two, combining marks none."""
    if text.isascii():
        return len(text)
    return sum(_char_width(c) for c in text)


@lru_cache(maxsize=8192)
def _char_width(char: str) -> int:
    if unicodedata.combining(char) or char in "\u200b\u200c\u200d\u200e\u200f":
        return 0
    return 2 if unicodedata.east_asian_width(char) in "WF" else 1


def _pieces(word: str, room: int) -> list[str]:
    """A word wider than ``room`` columns cut into pieces that fit (CJK text has no spaces)."""
    if display_width(word) <= room:
        return [word]
    out: list[str] = []
    piece, used = "", 0
    for char in word:
        w = _char_width(char)
        if used + w > room and piece:
            out.append(piece)
            piece, used = "", 0
        piece, used = piece + char, used + w
    out.append(piece)
    return out


def wrap(text: str, width: int = 72, indent: str = "   ", first: str | None = None) -> str:
    """Greedy word wrap for the text part by display width (textwrap counts characters, and
    does far more than we need, slowly). Words wider than a line are cut."""
    lines: list[str] = []
    line = indent if first is None else first
    used = display_width(line)
    empty = True
    room = max(8, width - len(indent))
    for long_word in text.split(" "):
        for word in _pieces(long_word, room):
            w = display_width(word)
            if not empty and used + 1 + w > width:
                lines.append(line)
                line, used = indent + word, len(indent) + w
            elif empty:
                line, used = line + word, used + w
            else:
                line, used = f"{line} {word}", used + 1 + w
            empty = False
    lines.append(line)
    return "\n".join(lines)
