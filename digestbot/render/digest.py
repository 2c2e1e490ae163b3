"""One reader's digest: the HTML and text parts, the subject, and the finished message."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import formataddr
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from markupsafe import Markup, escape

from ..config import Config
from ..errors import RenderError
from ..scoring.picks import Pick
from ..store import Paper, Subscriber
from . import feedcards, links, views
from .cards import Card, document, fill_document
from .cards import clear as clear_documents
from .clean import Highlighter, clean_text, clean_word, shorten
from .message import assemble, base_headers, encode_body, html_part, mime_bytes, sender_domain
from .templates import get_template, styled_tag
from .views import MONTHS, PaperView, card, paper_view, static_card
from .why import clear as clear_why
from .why import top_topic, why_pair

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
BAR_PX = 160


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def short_date(day: date) -> str:
    return f"{WEEKDAYS[day.weekday()][:3]} {day.day} {MONTHS[day.month - 1][:3]}"


def long_date(day: date) -> str:
    return f"{WEEKDAYS[day.weekday()]} {day.day} {MONTHS[day.month - 1]} {day.year}"


@dataclass
class RenderedDigest:
    """A digest ready to queue: ``as_bytes()`` is what goes into the outbox.

    ``html`` is the document as rendered; in the message it travels as 7-bit ASCII with
    non-ASCII characters as character references (the same document to any client).
    ``message`` parses the bytes back into an ``EmailMessage``; it costs milliseconds, so
    bulk code should use ``as_bytes()``. A digest built from cached cards has its message
    already, and puts ``html`` together only when it is asked for.
    """

    subject: str
    message_id: str
    recipient: str
    headers: list[tuple[str, str]] = field(repr=False)
    paper_ids: list[str] = field(default_factory=list)
    _text: str = field(default="", repr=False)
    _html: str | None = field(default=None, repr=False)
    _bytes: bytes | None = field(default=None, repr=False)
    _make_html: Callable[[], str] | None = field(default=None, repr=False)

    @property
    def text(self) -> str:
        return self._text

    @property
    def html(self) -> str:
        if self._html is None:
            assert self._make_html is not None
            self._html = self._make_html()
        return self._html

    def as_bytes(self) -> bytes:
        if self._bytes is None:
            self._bytes = mime_bytes(self.headers, self.text, self.html)
        return self._bytes

    @property
    def message(self) -> EmailMessage:
        """The message as the stdlib sees it (parsed back from the bytes, on demand)."""
        parsed = message_from_bytes(self.as_bytes(), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


_BARS = tuple("█" * cells + "░" * (10 - cells) for cells in range(11))


@lru_cache(maxsize=8)
def _mark_open() -> str:
    # a line break inside the tag keeps HTML lines short (7-bit needs <= 998 characters)
    # without adding visible whitespace, as one in the text would
    return styled_tag("mark", "kw").replace("<mark ", "<mark\n", 1)


Filled = list[tuple[Card, Sequence[str]]]  # cards and each one's values, in order


def _papers(
    entries: Sequence[tuple[Paper, Pick]],
    highlighter: Highlighter,
    config: Config,
    subscriber: Subscriber,
) -> tuple[Filled, Filled, list[PaperView]]:
    """The papers of a digest as (HTML, text, views): each paper's card is rendered once
    per process, and returned with this reader's values, to be filled in."""
    top = max(pick.score for _, pick in entries)
    mark_open = _mark_open()
    feedback = links.signer(config, "feedback")
    base = f"{links.site(config)}/feedback/"
    pref = subscriber.pref_token
    views = [paper_view(paper) for paper, _ in entries]
    html_card = get_template("_card.html.j2")
    text_card = get_template("_card.txt.j2")
    # signed tokens are URL-safe base64 and dots: only the base needs escaping
    base_html = str(escape(base))
    mark = highlighter.mark_str  # printed as it is: no Markup needed
    divider = static_card(get_template("_divider.html.j2"))
    html_cards: Filled = []
    text_cards: Filled = []
    for rank, (view, (_, pick)) in enumerate(zip(views, entries, strict=True), 1):
        score = pick.score
        share = max(0.0, min(1.0, score / top)) if top > 0 else 0.0
        more, less = feedback.feedback_pair(pref, view.paper_id)
        why, why_html = why_pair(view.upvotes, pick)
        relevance = f"score {score:.2f}"
        bar_text = _BARS[round(share * 10)]
        rank_text = str(rank)
        score_text = str(score)
        bar_px = str(max(6, round(BAR_PX * share)))
        if rank > 1:
            html_cards.append((divider, ()))
        # in READER_ORDER, as autoescaping Jinja prints them: escaped (the highlights,
        # Markup, as they are; a float has nothing to escape)
        title_html = mark(view.title_safe, view.title_low, mark_open, "</mark>", view.title_index)
        snippet_html = mark(
            view.snippet_safe, view.snippet_low, mark_open, "</mark>", view.snippet_index
        )
        shown, pick_values = card(html_card, view, html=True)
        values = (
            rank_text,
            title_html,
            snippet_html,
            score_text if score.__class__ is float else str(escape(score)),
            bar_px,
            bar_text,
            relevance,
            why_html,
            base_html + more,
            base_html + less,
        )
        html_cards.append((shown, pick_values(values)))
        shown, pick_values = card(text_card, view, html=False)
        values = (
            rank_text,
            title_html,
            snippet_html,
            score_text,
            bar_px,
            bar_text,
            relevance,
            why,
            base + more,
            base + less,
        )
        text_cards.append((shown, pick_values(values)))
    return html_cards, text_cards, views


def _joined(filled: Filled) -> str:
    out: list[str] = []
    for shown, values in filled:
        shown.fill(values, out)
    return "".join(out)


def _message(
    headers: list[tuple[str, str]],
    context: dict[str, Any],
    html_cards: Filled,
    text: str,
    html: Callable[[], str],
) -> bytes:
    """The message, its HTML filled in from the cards' encoded statics (see cards.py)."""
    out: list[str] = []
    for shown, values in html_cards:
        shown.fill_encoded(values, out)
    skeleton, values = document(
        get_template("digest.html.j2"),
        {**context, "papers_html": "".join(out)},
        html=True,
        block="papers_html",
    )
    out.clear()
    skeleton.fill_encoded(values, out)
    encoded = "".join(out).encode("ascii")
    return assemble(headers, encode_body(text, html=False), html_part(encoded, html))


def _recipient(subscriber: Subscriber) -> str:
    name = clean_text(subscriber.name)
    if name and subscriber.email.isascii():
        return formataddr((shorten(name, 80), subscriber.email))
    return subscriber.email


def render_digest(
    subscriber: Subscriber,
    entries: Sequence[tuple[Paper, Pick]],
    *,
    period: str,
    config: Config,
    now: datetime,
) -> RenderedDigest | None:
    """Render one reader's digest for ``period``.

    With no entries: ``None``, unless ``digest.send_empty`` is on, then a short note.
    """
    if now.tzinfo is None:
        raise RenderError("render_digest needs an aware datetime", field="now")
    if not entries and not config["digest.send_empty"]:
        return None
    local = now.astimezone(_zone(subscriber.timezone or "UTC"))
    day = local.date()
    weekly = subscriber.frequency == "weekly"
    when = f"week {day.isocalendar().week}" if weekly else short_date(day)
    count = len(entries)

    unsubscribe_token = links.sign(config, "unsubscribe", subscriber.pref_token)
    site = str(config["digest.site_url"]).rstrip("/")
    unsubscribe_url = f"{site}/unsubscribe/{unsubscribe_token}"
    keywords = [w for w in map(clean_word, subscriber.keywords or []) if w]
    context: dict[str, Any] = {
        "from_name": clean_text(config["digest.from_name"]) or "digestbot",
        "email": subscriber.email,
        "schedule": "weekly" if weekly else "daily",
        "date_long": (f"Week {day.isocalendar().week} · " if weekly else "") + long_date(day),
        "date_short": when if weekly else short_date(day),
        "preferences_url": links.preferences_url(config, subscriber),
        "unsubscribe_url": unsubscribe_url,
        "feed_url": links.feed_urls(config, subscriber)["rss"]
        if subscriber.formats in ("rss", "both")
        else "",
    }

    lazy_html: Callable[[], str] | None = None
    html_cards: Filled = []
    if entries:
        noun = "paper" if count == 1 else "papers"
        subject = f"{count} new {noun} for you · {when} · {top_topic(entries)}"
        matched = {m for _, pick in entries for m in pick.matched}
        highlighter = Highlighter.cached(frozenset((*matched, *keywords)))
        papers_html, papers_text, views = _papers(entries, highlighter, config, subscriber)
        if keywords:
            shown = ", ".join(shorten(k, 40) for k in keywords[:4])
            extra = f" and {len(keywords) - 4} more" if len(keywords) > 4 else ""
            subline = f"Chosen for your interests: {shown}{extra}."
        else:
            subline = "Chosen from the papers you liked and what is trending."
        context.update(
            subject=subject,
            headline=f"{count} new {noun} for you",
            subline=subline,
            preheader=shorten(" · ".join(v.title for v in views[:3]), 150),
        )
        html_cards = papers_html
        lazy_html = _html(context, html_cards)
        text = fill_document(
            get_template("digest.txt.j2"),
            {**context, "papers_text": _joined(papers_text)},
            html=False,
            block="papers_text",
        )
    else:
        subject = f"Nothing new for you · {when}"
        headline = "Nothing new this week" if weekly else "Nothing new today"
        context.update(subject=subject, headline=headline)
        html = get_template("empty.html.j2").render(context)
        text = get_template("empty.txt.j2").render(context)

    message_id = digest_message_id(config, subscriber, period)
    mailto = config["digest.unsubscribe_mailto"] or config["digest.from_address"]
    list_name = clean_text(config["digest.from_name"]) or "digestbot"
    headers = base_headers(
        config,
        to=_recipient(subscriber),
        subject=subject,
        message_id=message_id,
        date=local,
        headers=[
            ("List-Id", f"{list_name} <{config['digest.list_id']}>"),
            (
                "List-Unsubscribe",
                f"<{unsubscribe_url}>, <mailto:{mailto}?subject=unsubscribe%20{unsubscribe_token}>",
            ),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ],
    )
    result = RenderedDigest(
        subject=clean_text(subject),
        message_id=message_id,
        recipient=subscriber.email,
        headers=headers,
        paper_ids=[paper.id for paper, _ in entries],
    )
    result._text = text
    if lazy_html is None:
        result._html = html
    else:
        result._make_html = lazy_html
        result._bytes = _message(headers, context, html_cards, text, lazy_html)
    return result


def _html(context: dict[str, Any], html_cards: Filled) -> Callable[[], str]:
    """What puts a digest's HTML together from its cards, on demand."""

    def html() -> str:
        return fill_document(
            get_template("digest.html.j2"),
            {**context, "papers_html": Markup(_joined(html_cards))},
            html=True,
            block="papers_html",
        )

    return html


def clear_caches() -> None:
    """Forget the per-paper views, cards and feed pieces (they are rebuilt on demand)."""
    views.clear()  # the cards hang off the views
    clear_documents()
    clear_why()
    Highlighter.cached.cache_clear()
    feedcards.clear()


def digest_message_id(config: Config, subscriber: Subscriber, period: str) -> str:
    """Stable for one reader and one period; derived from the random pref_token, never
    from the address."""
    digest = hashlib.sha256(f"{subscriber.pref_token}{period}".encode()).hexdigest()[:40]
    return f"<{digest}@{sender_domain(config)}>"


__all__ = ["RenderedDigest", "digest_message_id", "render_digest"]
