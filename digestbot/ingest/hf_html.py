"""A Hugging Face papers page saved as HTML.

The site renders its lists from JSON it embeds in the page (``data-props`` attributes, JSON
``<script>`` elements): the papers are read from there, as the API JSON is. A page without
it (a reader tool's copy, another site's) is read from its visible markup, turned into the
Markdown that :mod:`.page` takes apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import lxml.html
from lxml import etree

from ..errors import IngestError
from .checks import READS
from .hf_json import read_items
from .hf_text import parse_text
from .model import ParsedPaper

_HTML = re.compile(r"<(?:!doctype\s+html|html|head|body|meta|div|script|main|article)\b", re.I)
_LIST_KEYS = ("papers", "dailyPapers", "items", "data")
_DROP = ("script", "style", "noscript", "svg", "template", "head")
_BLOCKS = (
    "p div li ul ol section article main header footer nav h1 h2 h3 h4 h5 h6 tr table "
    "br hr blockquote pre dd dt figure"
).split()


def is_html(head: str) -> bool:
    return _HTML.match(head) is not None


def parse_html(
    path: Path, text: str, listing_date: date | None, limit: date
) -> tuple[date, list[ParsedPaper], str, list[str]]:
    try:
        root = lxml.html.document_fromstring(text)
    except (etree.ParserError, ValueError) as exc:
        raise IngestError(f"unreadable HTML: {exc}", file=path, hint=READS) from None
    found = _embedded(root)
    if found is not None:
        where, data = found
        listed_on, papers, _, warnings = read_items(path, data, where)
        return listing_date or listed_on or limit, papers, "HTML page (embedded JSON)", warnings
    listed_on, papers, _, warnings = parse_text(path, _visible(root), listing_date, limit)
    return listed_on, papers, "HTML page (visible markup)", warnings


def _embedded(root: Any) -> tuple[str, Any] | None:
    """The largest list of papers in the page's embedded JSON, as (where, data)."""
    best: tuple[int, str, Any] | None = None
    for where, value in _json_blobs(root):
        for at, data, size in _paper_lists(value, where):
            if best is None or size > best[0]:
                best = (size, at, data)
    return (best[1], best[2]) if best else None


def _json_blobs(root: Any) -> Iterator[tuple[str, Any]]:
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        props = el.get("data-props")
        if props:
            target = el.get("data-target")
            yield from _decoded(props, f"data-props({target})" if target else "data-props")
        if el.tag == "script" and "json" in (el.get("type") or "") and el.text:
            yield from _decoded(el.text, f"script#{el.get('id')}" if el.get("id") else "script")


def _decoded(text: str, where: str) -> Iterator[tuple[str, Any]]:
    try:
        yield where, json.loads(text)
    except (ValueError, RecursionError):
        return  # not JSON, or not ours: the visible markup may still hold the list


def _is_paper(item: Any) -> bool:
    if not isinstance(item, dict):
        return False
    paper = item.get("paper", item)
    return isinstance(paper, dict) and "title" in paper and ("summary" in paper or "id" in paper)


def _paper_lists(value: Any, where: str, depth: int = 0) -> Iterator[tuple[str, Any, int]]:
    """(where, data for :func:`read_items`, papers) for each paper list or single paper."""
    if depth > 12:
        return
    if isinstance(value, dict):
        for key in _LIST_KEYS:
            items = value.get(key)
            if isinstance(items, list) and items and any(_is_paper(i) for i in items[:5]):
                envelope = {"date": value.get("date"), key: items}
                yield f"{where}.", envelope, len(items)
        if _is_paper(value.get("paper")):
            yield f"{where}.", {"paper": value["paper"]}, 1
        for key, inner in value.items():
            if isinstance(inner, dict | list) and key not in _LIST_KEYS:
                yield from _paper_lists(inner, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        if value and any(_is_paper(i) for i in value[:5]):
            yield where, value, len(value)


def _visible(root: Any) -> str:
    """The page's visible text, links as Markdown links and headings as Markdown headings."""
    for el in list(root.iter(*_DROP)):
        el.drop_tree()
    for a in list(root.iter("a")):
        href = a.get("href") or ""
        if href.startswith("/"):
            href = "https://huggingface.co" + href
        label = " ".join(a.text_content().split())
        for child in list(a):
            a.remove(child)
        a.text = f"[{label}]({href})" if href else label
        a.drop_tag()
    for el in root.iter(*_BLOCKS):
        level = el.tag[1] if el.tag in ("h1", "h2", "h3", "h4", "h5", "h6") else ""
        el.text = "\n\n" + ("#" * int(level) + " " if level else "") + (el.text or "")
        el.tail = "\n\n" + (el.tail or "")
    text: str = root.text_content()
    return "\n".join(line.strip() for line in text.split("\n"))
