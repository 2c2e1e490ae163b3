"""One reader's digest: the HTML and text parts, the subject, and the finished message."""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import formataddr
from functools import lru_cache, partial
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from markupsafe import Markup, escape

from ..config import Config
from ..errors import RenderError
from ..periods import WEEKDAYS
from ..scoring.picks import Pick
from ..store import Paper, Subscriber
from . import feedcards, links, views
from .cards import Card, document, fill_document
from .cards import clear as clear_documents
from .clean import Highlighter, clean_text, clean_word, shorten, wrap
from .message import assemble, base_headers, encode_body, html_part, mime_bytes, sender_domain
from .templates import get_template, styled_tag
from .views import MONTHS, WRAP, PaperView, card, paper_view, static_card
from .why import clear as clear_why
from .why import top_topic, why_pair


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
    text: str = field(default="", repr=False)
    _html: str | None = field(default=None, repr=False)
    _bytes: bytes | None = field(default=None, repr=False)
    _make_html: Callable[[], str] | None = field(default=None, repr=False)

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


# Relevance as a reader reads it: five dots and a word, measured against the digest's best
# pick (a raw score such as 0.21 means nothing to a reader).
_LEVELS = tuple(
    (floor, "●" * dots + "○" * (5 - dots), words)
    for floor, dots, words in (
        (0.85, 5, "top match"),
        (0.6, 4, "strong match"),
        (0.35, 3, "good match"),
        (0.15, 2, "partial match"),
        (0.0, 1, "loose match"),
    )
)


def relevance(score: float, top: float) -> tuple[str, str]:
    """(dots, words) for a pick scoring ``score`` in a digest whose best scores ``top``."""
    share = score / top if top > 0 else 0.0
    for floor, scale, words in _LEVELS:
        if share >= floor:
            return scale, words
    return _LEVELS[-1][1:]


MARK_CLOSE = "</b>"


@lru_cache(maxsize=4096)
def _why_wrapped(why: str) -> str:
    # readers' picks share a few why lines: each is wrapped once per process
    return wrap("Why: " + why, WRAP)


@lru_cache(maxsize=4096)
def _why_size(why: str) -> int:
    return _sent(why, 1, 2)


@lru_cache(maxsize=1024)
def _wrapped(text: str) -> str:
    return wrap(text, 78, indent="")


@lru_cache(maxsize=8)
def _mark_open() -> str:
    # a line break inside the tag keeps HTML lines short (7-bit needs <= 998 characters)
    # without adding visible whitespace, as one in the text would
    # <b>, not <mark>: Yahoo strips <mark>, and the highlight would vanish with it
    return styled_tag("b", "kw").replace("<b ", "<b\n", 1)


Filled = list[tuple[Card, Sequence[str]]]  # cards and each one's values, in order


def _marked(highlighter: Highlighter, view: PaperView, snippet: bool) -> tuple[str, str]:
    """A paper's title and, if ``snippet``, its snippet with the reader's keywords marked
    (HTML); else ""."""
    mark, mark_open = highlighter.mark_str, _mark_open()
    title = mark(view.title_safe, view.title_low, mark_open, MARK_CLOSE, view.title_index)
    if not snippet:
        return title, ""
    return title, mark(
        view.snippet_safe, view.snippet_low, mark_open, MARK_CLOSE, view.snippet_index
    )


def _papers(
    entries: Sequence[tuple[Paper, Pick]],
    views: Sequence[PaperView],
    marks: Marks,
    config: Config,
    subscriber: Subscriber,
    full: int,
) -> tuple[Filled, Filled]:
    """The papers of a digest as (HTML, text), the first ``full`` with full cards and the
    rest with short ones: each paper's card is rendered once per process and returned with
    this reader's values (``marks`` the highlighted titles and snippets), to be filled in."""
    top = max(pick.score for _, pick in entries)
    feedback = links.signer(config, "feedback")
    base = f"{links.site(config)}/feedback/"
    pref = subscriber.pref_token
    templates = {
        True: (get_template("_card.html.j2"), get_template("_card.txt.j2")),
        False: (get_template("_card_short.html.j2"), get_template("_card_short.txt.j2")),
    }
    # signed tokens are URL-safe base64 and dots: only the base needs escaping
    base_html = str(escape(base))
    divider = static_card(get_template("_divider.html.j2"))
    html_cards: Filled = []
    text_cards: Filled = []
    for rank, (view, (_, pick)) in enumerate(zip(views, entries, strict=True), 1):
        html_card, text_card = templates[rank <= full]
        if rank <= full:
            more, less = feedback.feedback_pair(pref, view.paper_id)
        else:  # the short card has no feedback links: not worth two signatures
            more = less = ""
        why, why_html = why_pair(view.upvotes, pick)
        scale, words = relevance(pick.score, top)
        rank_text = str(rank)
        why_wrapped = _why_wrapped(why)
        if 1 < rank <= full:  # a short card has a line of its own
            html_cards.append((divider, ()))
        # in READER_ORDER, as autoescaping Jinja prints them: escaped (the highlights,
        # Markup, as they are; these words and dots have nothing to escape)
        shared = (rank_text, *marks[rank - 1], scale, words)
        shown, pick_values = card(html_card, view, html=True)
        html_why = (why_html, str(escape(why_wrapped)), base_html + more, base_html + less)
        html_cards.append((shown, pick_values((*shared, *html_why))))
        shown, pick_values = card(text_card, view, html=False)
        text_why = (why, why_wrapped, base + more, base + less)
        text_cards.append((shown, pick_values((*shared, *text_why))))
    return html_cards, text_cards


# What a message may hold: Gmail clips messages over 102 KB, hiding the footer's links.
FULL_CARDS = 10  # papers shown in full; the rest get short cards
PAPERS_BUDGET = 88_000  # bytes of cards (HTML and text, as sent) a message may hold
# bytes of a card around its paper's text (both parts, with the feedback links), measured
# with room to spare; a test checks digests of a hundred long papers stay under 100 KB
FULL_OVERHEAD, SHORT_OVERHEAD = 3_600, 650


def _sent(value: str, html: int, text: int) -> int:
    """Bytes ``value`` takes as sent, printed ``html`` times in the HTML part (character
    references) and ``text`` times in the text part (quoted-printable UTF-8)."""
    if value.isascii():
        return len(value) * (html + text)
    return html * len(value.encode("ascii", "xmlcharrefreplace")) + text * len(
        binascii.b2a_qp(value.encode("utf-8"))
    )


Marks = list[tuple[str, str]]  # papers' highlighted title and snippet (HTML)


def _paper_sizes(view: PaperView) -> list[int]:
    """What a paper's cards weigh apart from the reader's highlights, computed once per
    paper: [full card, short card, extra bytes of the title's and the snippet's non-ASCII
    characters as sent in the HTML part]."""
    if not view.sizes:
        title_extra = _sent(view.title_safe, 1, 0) - len(view.title_safe)
        snippet_extra = _sent(view.snippet_safe, 1, 0) - len(view.snippet_safe)
        full = FULL_OVERHEAD + _sent(view.title, 0, 1) + _sent(view.snippet, 0, 1)
        full += _sent(view.meta, 1, 1) + _sent(view.authors, 1, 1)
        full += _sent(view.label, 5, 0) + _sent(view.code_url, 1, 1)
        full += _sent(view.code_label, 1, 1)
        full += 2 * _sent(view.url + view.abs_url, 2, 1)
        short = SHORT_OVERHEAD + _sent(view.title, 0, 1) + _sent(view.authors, 1, 0)
        short += _sent(view.label, 1, 0) + _sent(view.url + view.abs_url, 1, 1)
        view.sizes.extend((full, short, title_extra, snippet_extra))
    return view.sizes


def papers_shown(
    views: Sequence[PaperView], whys: Sequence[str], highlighter: Highlighter
) -> tuple[int, Marks]:
    """How many papers fit in the message: full cards first, then short ones, until the
    estimated size reaches the budget (the rest are on the browser page); and the papers'
    highlighted title and snippet, measured here and printed by the cards (a short card
    has no snippet: "")."""
    used = 0
    marks: Marks = []
    for i, (view, why) in enumerate(zip(views, whys, strict=True)):
        full, short, title_extra, snippet_extra = _paper_sizes(view)
        title, snippet = _marked(highlighter, view, i < FULL_CARDS)
        if i < FULL_CARDS:
            size = full + len(title) + title_extra + len(snippet) + snippet_extra
            size += _why_size(why)
        else:
            size = short + len(title) + title_extra
        used += size
        if used > PAPERS_BUDGET and i > 0:
            return i, marks
        marks.append((title, snippet))
    return len(views), marks


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
    skeleton, printed = document(
        get_template("digest.html.j2"),
        {**context, "papers_html": "".join(out)},
        html=True,
        block="papers_html",
    )
    out.clear()
    skeleton.fill_encoded(printed, out)
    encoded = "".join(out).encode("ascii")
    return assemble(headers, encode_body(text, html=False), html_part(encoded, html))


def _recipient(subscriber: Subscriber) -> str:
    name = clean_text(subscriber.name)
    if name and subscriber.email.isascii():
        return formataddr((shorten(name, 80), subscriber.email))
    return subscriber.email


def week_range(day: date) -> str:
    """The seven days ending on ``day``, as a reader says them: "21–27 Nov",
    "28 Nov – 4 Dec", "28 Dec 2026 – 3 Jan 2027"."""
    start = day - timedelta(days=6)
    end = f"{day.day} {MONTHS[day.month - 1][:3]}"
    if start.year != day.year:
        return f"{start.day} {MONTHS[start.month - 1][:3]} {start.year} – {end} {day.year}"
    if start.month != day.month:
        return f"{start.day} {MONTHS[start.month - 1][:3]} – {end}"
    return f"{start.day}–{end}"


def _subline(keywords: Sequence[str], trending: bool) -> str:
    """What the papers were chosen from, as the scoring did it: popularity is named only
    when ``scoring.popularity_weight`` gives it a say."""
    also = " and what is trending" if trending else ""
    if keywords:
        shown = ", ".join(shorten(k, 40) for k in keywords[:4])
        extra = f" and {len(keywords) - 4} more" if len(keywords) > 4 else ""
        return f"Chosen for your interests{also}: {shown}{extra}."
    return f"Chosen from the papers you liked{also}."


def render_digest(
    subscriber: Subscriber,
    entries: Sequence[tuple[Paper, Pick]],
    *,
    period: str,
    config: Config,
    now: datetime,
    whole: bool = False,
) -> RenderedDigest | None:
    """Render one reader's digest for ``period``.

    The message holds as many papers as keep it
    under 100 KB (full cards for the first ten, short ones after), and links to the whole
    digest on the web front; ``whole=True`` renders that page instead: every paper in full.

    With no entries: ``None``, unless ``digest.send_empty`` is on, then a short note.
    """
    if now.tzinfo is None:
        raise RenderError("render_digest needs an aware datetime", field="now")
    if not entries and not config["digest.send_empty"]:
        return None
    local = now.astimezone(_zone(subscriber.timezone or "UTC"))
    day = local.date()
    weekly = subscriber.frequency == "weekly"
    when = week_range(day) if weekly else short_date(day)
    count = len(entries)

    unsubscribe_token = links.sign(config, "unsubscribe", subscriber.pref_token)
    unsubscribe_url = f"{links.site(config)}/unsubscribe/{unsubscribe_token}"
    keywords = [w for w in map(clean_word, subscriber.keywords or []) if w]
    from_name = clean_text(config["digest.from_name"]) or "digestbot"
    schedule = "weekly" if weekly else "daily"
    reason = f"You get this email because {subscriber.email} subscribed to {schedule} paper"
    context: dict[str, Any] = {
        "from_name": from_name,
        "email": subscriber.email,
        "schedule": schedule,
        "reason_wrapped": wrap(f"{reason} digests from {from_name}.", 78, indent=""),
        "date_long": f"{week_range(day)} {day.year}" if weekly else long_date(day),
        "date_short": when,
        "preferences_url": links.preferences_url(config, subscriber),
        "unsubscribe_url": unsubscribe_url,
        "feed_url": links.feed_urls(config, subscriber.feed_token)["rss"]
        if subscriber.formats in ("rss", "both")
        else "",
        "view_url": "",
        # the browser page may carry a stylesheet (dark mode, narrow screens); mail may not:
        # Gmail's mobile web client drops every <style> block (doiuse-email)
        "web_page": whole,
    }

    lazy_html: Callable[[], str] | None = None
    html: str | None = None
    if entries:
        noun = "paper" if count == 1 else "papers"
        subject = f"{count} new {noun} for you · {when} · {top_topic(entries)}"
        matched = {m for _, pick in entries for m in pick.matched}
        highlighter = Highlighter.cached(frozenset((*matched, *keywords)))
        views = [paper_view(p) for p, _ in entries]
        if whole:
            shown = full = count
            marks = [_marked(highlighter, view, True) for view in views]
        else:
            whys = [why_pair(v.upvotes, e[1])[0] for v, e in zip(views, entries, strict=True)]
            shown, marks = papers_shown(views, whys, highlighter)
            full = FULL_CARDS
            context["view_url"] = links.digest_view_url(config, subscriber, period)
        views = views[:shown]
        html_cards, papers_text = _papers(entries[:shown], views, marks, config, subscriber, full)
        trending = float(config["scoring.popularity_weight"]) > 0
        subline = _subline(keywords, trending)
        rest = count - shown
        context.update(
            subject=subject,
            headline=f"{count} new {noun} for you",
            subline=subline,
            subline_wrapped=_wrapped(subline),
            preheader=shorten(" · ".join(v.title for v in views[:3]), 100),
            more_text=f"See the other {rest} paper{'s' if rest != 1 else ''} in your browser"
            if rest
            else "",
        )
        lazy_html = partial(_html, context, html_cards)
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
    headers = base_headers(
        config,
        to=_recipient(subscriber),
        subject=subject,
        message_id=message_id,
        date=local,
        headers=[
            ("List-Id", f"{from_name} <{config['digest.list_id']}>"),
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
        text=text,
        _html=html,
        _make_html=lazy_html,
    )
    if lazy_html is not None:
        result._bytes = _message(headers, context, html_cards, text, lazy_html)
    return result


def _html(context: dict[str, Any], html_cards: Filled) -> str:
    """A digest's HTML put together from its cards (on demand: see RenderedDigest)."""
    return fill_document(
        get_template("digest.html.j2"),
        {**context, "papers_html": Markup(_joined(html_cards))},
        html=True,
        block="papers_html",
    )


def clear_caches() -> None:
    """Forget the per-paper views, cards and feed pieces (they are rebuilt on demand)."""
    views.clear()  # the cards hang off the views
    clear_documents()
    clear_why()
    Highlighter.cached.cache_clear()
    feedcards.clear()
    for cache in (_why_wrapped, _why_size, _wrapped):
        cache.cache_clear()


def digest_message_id(config: Config, subscriber: Subscriber, period: str) -> str:
    """Stable for one reader and one period; derived from the random pref_token, never
    from the address."""
    digest = hashlib.sha256(f"{subscriber.pref_token}{period}".encode()).hexdigest()[:40]
    return f"<{digest}@{sender_domain(config)}>"


__all__ = ["RenderedDigest", "digest_message_id", "render_digest"]
