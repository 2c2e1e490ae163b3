"""What the parsers produce: plain records, no database."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, cast

_NOT_WORD = re.compile(r"[\W_]+")
# C0 controls other than tab and newline, and DEL: PostgreSQL refuses NUL in text, and
# none of them belongs in a title or an abstract.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# a lone surrogate (a broken "\\ud83d" escape in JSON, an undecodable byte in a file name)
# cannot be encoded as UTF-8, so no database or terminal takes it
_SURROGATE = re.compile("[\ud800-\udfff]")


# ASCII bytes that are not letters or digits (what [\W_] matches in ASCII) -> space; a
# bytes table, since str.translate looks each character up in a dict
_ASCII_NOT_WORD = bytes(c if chr(c).isalnum() and c < 128 else 32 for c in range(256))
# copying a started hash skips OpenSSL's per-call algorithm lookup (half the cost of a key)
_SHA256 = hashlib.sha256()


def _normalised_ascii(title: str) -> bytes:
    # the same as the general rule for ASCII (NFKC changes nothing, casefold is lower)
    return b" ".join(title.encode("ascii").lower().translate(_ASCII_NOT_WORD).split())


def normalise_title(title: str) -> str:
    """Case, accents' composed forms, punctuation and spacing stop mattering."""
    if title.isascii():
        return _normalised_ascii(title).decode("ascii")
    return _NOT_WORD.sub(" ", unicodedata.normalize("NFKC", title).casefold()).strip()


def title_key(title: str) -> str:
    """The stable dedupe key of a title: SHA-256 of its normalised form."""
    digest = _SHA256.copy()
    digest.update(
        _normalised_ascii(title) if title.isascii() else normalise_title(title).encode("utf-8")
    )
    return digest.hexdigest()


def paper_id_for(arxiv_id: str | None, key: str) -> str:
    """The arXiv id when known, else a stable id derived from the title."""
    return arxiv_id if arxiv_id else "t" + key[:16]


def clean_text(text: str, plain: bool = False) -> str:
    """One line of text: control characters dropped, runs of spaces collapsed.

    ``plain`` says the text is known to hold no control characters (a whole file was
    checked at once): then ASCII text only needs its runs of spaces collapsed."""
    if plain and text.isascii():
        return text.strip() if "  " not in text else " ".join(text.split())
    if text.isprintable() and "  " not in text:
        return text.strip()  # the usual case, checked at C speed
    if _CONTROL.search(text):
        text = _CONTROL.sub("", text)
    if _SURROGATE.search(text):
        text = _SURROGATE.sub("\ufffd", text)
    return " ".join(text.split())


def printable_name(value: object) -> str:
    """Text safe to store and print: lone surrogates become U+FFFD."""
    text = str(value)
    return _SURROGATE.sub("\ufffd", text) if not text.isascii() else text


@dataclass(slots=True)
class ParsedPaper:
    title: str
    abstract: str
    line: int  # where the entry starts in the file (1-based); 0 when not line-based
    key: str = ""
    arxiv_id: str | None = None
    authors: list[str] | None = None
    author_count: int | None = None
    organization: str | None = None
    published_on: date | None = None
    upvotes: int | None = None
    comments: int | None = None
    links: list[str] = field(default_factory=list)
    github_url: str | None = None
    github_stars: int | None = None

    def __post_init__(self) -> None:
        if not self.key:
            self.key = title_key(self.title)

    @property
    def id(self) -> str:
        return paper_id_for(self.arxiv_id, self.key)


@dataclass(slots=True)
class ParsedDump:
    path: Path
    format: str  # the name of one of parse.FORMATS: "hf-text", "hf-json", "hf-html"
    listed_on: date
    papers: list[ParsedPaper]
    content_hash: str
    entries: int = 0  # entries in the file, before repeats within it are merged
    warnings: list[str] = field(default_factory=list)


MERGED_FIELDS = (
    "arxiv_id",
    "abstract",
    "authors",
    "author_count",
    "organization",
    "published_on",
    "listed_on",
    "upvotes",
    "comments",
    "links",
    "github_url",
    "github_stars",
)


def merged_values(paper: ParsedPaper, listed_on: date | None = None) -> dict[str, Any]:
    """The paper's :data:`MERGED_FIELDS`, as :func:`merge_fields` takes them (a literal:
    this runs for every paper ingested)."""
    return {
        "arxiv_id": paper.arxiv_id,
        "abstract": paper.abstract,
        "authors": paper.authors,
        "author_count": paper.author_count,
        "organization": paper.organization,
        "published_on": paper.published_on,
        "listed_on": listed_on,
        "upvotes": paper.upvotes,
        "comments": paper.comments,
        "links": paper.links,
        "github_url": paper.github_url,
        "github_stars": paper.github_stars,
    }


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def merge_fields(old: dict[str, object], new: dict[str, object]) -> dict[str, object]:
    """The fields of ``old`` that ``new`` improves: a paper keeps the best of every listing.

    Order does not matter, so ingesting dumps again, or in another order, ends the same.
    Counts only grow (upvotes, comments and stars rise over time); the longer abstract wins (a
    cut-off copy is repaired by a complete one); missing facts are filled in; the earliest
    listing date stays; links are the union.
    """
    changes: dict[str, object] = {}
    for name in MERGED_FIELDS:
        b = new.get(name)
        if b is None:  # most fields of most listings: skip them first
            continue
        a = old.get(name)
        if a == b:
            continue
        if name == "abstract":
            value = b if len(b) > len(a or "") else a  # type: ignore[arg-type]
        elif name == "authors":
            value = b if a is None or len(b) > len(a) else a  # type: ignore[arg-type]
        elif name in ("author_count", "upvotes", "comments", "github_stars"):
            value = _max(a, b)  # type: ignore[arg-type]
        elif name == "listed_on":
            value = b if a is None or b < a else a  # type: ignore[operator]
        elif name == "links":
            known = cast(list[str], a or [])
            value = known + [link for link in cast(list[str], b) if link not in known]
        else:
            value = a if a is not None else b
        if value != a:
            changes[name] = value
    return changes
