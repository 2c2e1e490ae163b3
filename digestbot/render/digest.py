"""One reader's digest: the HTML and text parts, the subject, and the finished message."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import formataddr
from functools import lru_cache
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from markupsafe import Markup, escape

from ..config import Config
from ..errors import RenderError
from ..scoring.picks import Pick
from ..store import Paper, Subscriber
from . import links
from .clean import (
    Highlighter,
    clean_text,
    clean_title,
    clean_word,
    first_sentences,
    shorten,
    word_index,
    wrap,
)
from .links import BulkSigner
from .message import base_headers, mime_bytes, sender_domain
from .templates import get_template, styled_tag

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January February March April May June July August September October November December"
).split()
BAR_PX = 160
WRAP = 72


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


def paper_date(day: date) -> str:
    return f"{day.day} {MONTHS[day.month - 1][:3]} {day.year}"


@dataclass(slots=True, frozen=True)
class PaperView:
    """What every reader's digest shows of one paper, computed once per paper per process."""

    url: str
    title: str
    title_wrapped: str
    meta: str
    snippet: str
    snippet_wrapped: str
    title_safe: str  # title and snippet HTML-escaped, and lowercased, for the highlighter
    title_low: str
    snippet_safe: str
    snippet_low: str
    title_index: dict[str, list[int]] | None = field(compare=False, hash=False)
    snippet_index: dict[str, list[int]] | None = field(compare=False, hash=False)


@dataclass(slots=True)
class Entry:
    """What the templates show for one paper in one reader's digest; strings cleaned."""

    rank: int
    paper_id: str
    url: str
    title: str
    title_wrapped: str
    meta: str
    snippet: str
    snippet_wrapped: str
    title_html: Markup
    snippet_html: Markup
    score: float
    bar_px: int
    bar_text: str
    relevance: str
    why: str
    more_url: str
    less_url: str


@dataclass
class RenderedDigest:
    """A digest ready to queue: ``as_bytes()`` is what goes into the outbox.

    ``html`` is the document as rendered; in the message it travels as 7-bit ASCII with
    non-ASCII characters as character references (the same document to any client).
    ``message`` parses the bytes back into an ``EmailMessage``; it costs milliseconds, so
    bulk code should use ``as_bytes()``.
    """

    subject: str
    message_id: str
    recipient: str
    text: str
    html: str
    headers: list[tuple[str, str]] = field(repr=False)
    paper_ids: list[str] = field(default_factory=list)
    _bytes: bytes | None = field(default=None, repr=False)

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


def paper_meta(paper: Paper) -> str:
    parts: list[str] = []
    org = clean_text(paper.organization)
    if org:
        parts.append(shorten(org, 60))
    count = paper.author_count if paper.author_count is not None else len(paper.authors or [])
    if count:
        parts.append(f"{count} author{'s' if count != 1 else ''}")
    day = paper.published_on or paper.listed_on
    if day:
        parts.append(paper_date(day))
    if paper.upvotes is not None:
        parts.append(f"▲ {paper.upvotes} upvote{'s' if paper.upvotes != 1 else ''}")
    if paper.comments:
        parts.append(f"{paper.comments} comment{'s' if paper.comments != 1 else ''}")
    return " · ".join(parts)


def why_line(paper: Paper, pick: Pick) -> str:
    reasons: list[str] = []
    matched = [w for w in map(clean_word, pick.matched) if w]
    if matched:
        shown = ", ".join(f"“{shorten(m, 40)}”" for m in matched[:3])
        more = f" and {len(matched) - 3} more" if len(matched) > 3 else ""
        noun = "keyword" if len(matched) == 1 else "keywords"
        reasons.append(f"Matches your {noun} {shown}{more}")
    if pick.similar_title:
        reasons.append(f"Similar to “{clean_title(pick.similar_title, 80)}”, which you liked")
    if not reasons:
        if paper.upvotes:
            return f"Close to your interests, and trending with {paper.upvotes} upvotes"
        return "Close to your interests overall"
    return "; ".join(reasons)


def top_topic(entries: Sequence[tuple[Paper, Pick]]) -> str:
    """The keyword matched most often, earlier ranks breaking ties; else the top title."""
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    for rank, (_, pick) in enumerate(entries):
        for word in map(clean_word, pick.matched):
            if word:
                counts[word.lower()] += 1
                first.setdefault(word.lower(), rank)
    if counts:
        best = min(counts, key=lambda w: (-counts[w], first[w]))
        for _, pick in entries:  # the reader's own spelling of it
            for word in pick.matched:
                if clean_word(word).lower() == best:
                    return shorten(clean_word(word), 50)
    return shorten(clean_title(entries[0][0].title), 50)


_VIEWS: dict[tuple[Any, ...], PaperView] = {}
_VIEWS_MAX = 4096
_FIELD_NAMES = (
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
)
_VIEW_FIELDS = itemgetter(*_FIELD_NAMES)


def paper_view(paper: Paper) -> PaperView:
    """The reader-independent part of a paper's entry, cached: a run renders the same few
    hundred papers for every reader. The key holds every field shown, so an edit shows."""
    state = paper.__dict__
    try:  # loaded attributes straight from the instance: ORM descriptors cost ~0.3 µs each
        key = (*_VIEW_FIELDS(state), len(state["authors"] or ()))
    except KeyError:  # not loaded (expired, deferred) or never set: ask the ORM
        key = (
            *(state[f] if f in state else getattr(paper, f) for f in _FIELD_NAMES),
            len(paper.authors or ()),
        )
    view = _VIEWS.get(key)
    if view is None:
        title = clean_title(paper.title)
        snippet = first_sentences(paper.abstract)
        title_safe, snippet_safe = str(escape(title)), str(escape(snippet))
        view = PaperView(
            url=links.paper_url(paper),
            title=title,
            title_wrapped=wrap(title, WRAP, first=""),
            meta=paper_meta(paper),
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


# Per-reader fields of a card; everything else in it depends on the paper alone.
READER_FIELDS = (
    "rank",
    "title_html",
    "snippet_html",
    "score",
    "bar_px",
    "bar_text",
    "relevance",
    "why",
    "more_url",
    "less_url",
)
_MARK = "\x00"  # never in a cleaned value (clean_text drops controls) nor in a template


@dataclass(slots=True)
class _Slots:
    """What a card template sees when it is rendered once per paper: the paper's own
    fields, and for each reader's field a marker where the value will go."""

    url: str
    title: str
    title_wrapped: str
    meta: str
    snippet: str
    snippet_wrapped: str
    paper_id: str = ""

    def __getattr__(self, name: str) -> Markup:
        if name in READER_FIELDS:
            return Markup(f"{_MARK}{name}{_MARK}")
        raise AttributeError(name)


@dataclass(slots=True, frozen=True)
class Card:
    """One paper's card rendered once: the text between the reader's fields, and their
    names. ``statics`` has one more item than ``names``."""

    statics: tuple[str, ...]
    names: tuple[str, ...]

    def fill(self, values: Sequence[str], out: list[str]) -> None:
        """Append the card with ``values`` (one per name, ready to print) to ``out``."""
        parts: list[Any] = [None] * (2 * len(self.names) + 1)
        parts[::2] = self.statics
        parts[1::2] = values
        out.extend(parts)


_CARDS: dict[tuple[Any, ...], Card] = {}
_CARDS_MAX = 8192


def card(template: Any, view: PaperView, first: bool) -> Card:
    """One paper's card (``_card.html.j2`` or ``_card.txt.j2``) rendered by Jinja once per
    paper per process, with a marker where each reader's field goes; filling it with the
    reader's values, printed as Jinja prints them, gives what rendering it would."""
    key = (template, view, first)
    found = _CARDS.get(key)
    if found is None:
        slots = _Slots(
            view.url, view.title, view.title_wrapped, view.meta, view.snippet, view.snippet_wrapped
        )
        parts = template.render(e=slots, first=first).split(_MARK)
        names = tuple(parts[1::2])
        if len(parts) % 2 == 0 or not set(names) <= set(READER_FIELDS):
            raise RenderError(f"card template {template.name} produced a stray marker")
        found = Card(tuple(parts[::2]), names)
        if len(_CARDS) >= _CARDS_MAX:
            _CARDS.clear()
        _CARDS[key] = found
    return found


def _reader_fields(
    rank: int,
    paper: Paper,
    view: PaperView,
    pick: Pick,
    top: float,
    highlighter: Highlighter,
    mark_open: str,
    feedback: BulkSigner,
    feedback_base: str,
    pref_token: str,
) -> dict[str, Any]:
    share = max(0.0, min(1.0, pick.score / top)) if top > 0 else 0.0
    cells = round(share * 10)
    pid = paper.id
    return {
        "rank": rank,
        "title_html": highlighter.mark_safe(
            view.title_safe, view.title_low, mark_open, "</mark>", view.title_index
        ),
        "snippet_html": highlighter.mark_safe(
            view.snippet_safe, view.snippet_low, mark_open, "</mark>", view.snippet_index
        ),
        "score": pick.score,
        "bar_px": max(6, round(BAR_PX * share)),
        "bar_text": "█" * cells + "░" * (10 - cells),
        "relevance": f"score {pick.score:.2f}",
        "why": why_line(paper, pick),
        "more_url": feedback_base + feedback.dumps_feedback(pref_token, pid, "more"),
        "less_url": feedback_base + feedback.dumps_feedback(pref_token, pid, "less"),
    }


def _entry(view: PaperView, paper_id: str, fields: dict[str, Any]) -> Entry:
    return Entry(
        paper_id=paper_id,
        url=view.url,
        title=view.title,
        title_wrapped=view.title_wrapped,
        meta=view.meta,
        snippet=view.snippet,
        snippet_wrapped=view.snippet_wrapped,
        **fields,
    )


def _papers(
    entries: Sequence[tuple[Paper, Pick]],
    highlighter: Highlighter,
    config: Config,
    subscriber: Subscriber,
    cards: bool,
) -> tuple[str, str, list[PaperView]]:
    """The papers of a digest as (HTML, text, views). With ``cards``, each paper's card is
    rendered once per process and filled per reader; without, every card goes through
    Jinja (``_papers.*.j2``): the reference the tests hold the cards to."""
    top = max(pick.score for _, pick in entries)
    # a line break inside the tag keeps HTML lines short (7-bit needs <= 998 characters)
    # without adding visible whitespace, as one in the text would
    mark_open = styled_tag("mark", "kw").replace("<mark ", "<mark\n", 1)
    feedback = links.signer(config, "feedback")
    base = f"{links.site(config)}/feedback/"
    pref = subscriber.pref_token
    views = [paper_view(paper) for paper, _ in entries]
    rows = [
        _reader_fields(rank, paper, view, pick, top, highlighter, mark_open, feedback, base, pref)
        for rank, (view, (paper, pick)) in enumerate(zip(views, entries, strict=True), 1)
    ]
    if not cards:
        objs = [
            _entry(view, paper.id, f)
            for view, (paper, _), f in zip(views, entries, rows, strict=True)
        ]
        html = get_template("_papers.html.j2").render(entries=objs)
        text = get_template("_papers.txt.j2").render(entries=objs)
        return html, text, views
    html_card = get_template("_card.html.j2")
    text_card = get_template("_card.txt.j2")
    html_parts: list[str] = []
    text_parts: list[str] = []
    for view, fields in zip(views, rows, strict=True):
        first = fields["rank"] == 1
        # as autoescaping Jinja prints them: escaped (Markup, e.g. the highlights, as is)
        one = card(html_card, view, first)
        one.fill([escape(fields[name]) for name in one.names], html_parts)
        one = card(text_card, view, first)
        one.fill([str(fields[name]) for name in one.names], text_parts)
    return "".join(html_parts), "".join(text_parts), views


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
    cards: bool = True,
) -> RenderedDigest | None:
    """Render one reader's digest for ``period``.

    ``cards=False`` renders every paper through Jinja instead of filling the per-paper
    cards (same output, slower: for tests).

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

    if entries:
        noun = "paper" if count == 1 else "papers"
        subject = f"{count} new {noun} for you · {when} · {top_topic(entries)}"
        matched = {m for _, pick in entries for m in pick.matched}
        highlighter = Highlighter([*matched, *keywords])
        papers_html, papers_text, views = _papers(entries, highlighter, config, subscriber, cards)
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
            papers_html=Markup(papers_html),
            papers_text=papers_text,
        )
        html = get_template("digest.html.j2").render(context)
        text = get_template("digest.txt.j2").render(context)
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
    return RenderedDigest(
        subject=clean_text(subject),
        message_id=message_id,
        recipient=subscriber.email,
        text=text,
        html=html,
        headers=headers,
        paper_ids=[paper.id for paper, _ in entries],
    )


def clear_caches() -> None:
    """Forget the per-paper views and cards (they are rebuilt on demand)."""
    _VIEWS.clear()
    _CARDS.clear()


Job = tuple[Subscriber, Sequence[tuple[Paper, Pick]], str]  # reader, entries, period
_SHARED: tuple[Sequence[Job], Config, datetime] | None = None  # what forked workers read


def _render_job(job: Job, config: Config, now: datetime) -> RenderedDigest | None | Exception:
    subscriber, entries, period = job
    try:
        return render_digest(subscriber, entries, period=period, config=config, now=now)
    except Exception as exc:  # one reader's broken digest must not stop the others
        return exc


def _render_span(span: tuple[int, int]) -> list[RenderedDigest | None | Exception]:
    assert _SHARED is not None, "render_many's workers read the jobs inherited by fork"
    jobs, config, now = _SHARED
    out: list[RenderedDigest | None | Exception] = []
    for job in jobs[span[0] : span[1]]:
        result = _render_job(job, config, now)
        if isinstance(result, RenderedDigest):
            result.as_bytes()
            # what the queue needs travels back; the two bodies are inside the message
            result.html = result.text = ""
        elif isinstance(result, Exception):
            result = RenderError(f"{type(result).__name__}: {result}")
        out.append(result)
    return out


def render_many(
    jobs: Sequence[Job],
    *,
    config: Config,
    now: datetime,
    processes: int = 1,
    chunk: int = 200,
) -> list[RenderedDigest | None | Exception]:
    """Render many readers' digests: for each job, what :func:`render_digest` returns, or
    the exception it raised (one broken digest does not stop the others).

    With ``processes`` > 1 (and a platform that forks), a process pool renders spans of
    ``chunk`` jobs; the workers inherit the jobs when forked, so nothing is pickled on the
    way in. Digests coming back from a worker carry their finished message (``as_bytes()``),
    subject, message id, recipient and paper ids; ``html`` and ``text`` are left empty, as
    they are inside the message.
    """
    global _SHARED
    if processes <= 1 or len(jobs) <= chunk:
        return [_render_job(job, config, now) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    try:
        context = multiprocessing.get_context("fork")
    except ValueError:  # no fork (Windows): one process
        return [_render_job(job, config, now) for job in jobs]
    spans = [(i, min(i + chunk, len(jobs))) for i in range(0, len(jobs), chunk)]
    _SHARED = (jobs, config, now)
    try:
        with ProcessPoolExecutor(processes, mp_context=context) as pool:
            return [r for part in pool.map(_render_span, spans) for r in part]
    finally:
        _SHARED = None


def digest_message_id(config: Config, subscriber: Subscriber, period: str) -> str:
    """Stable for one reader and one period; derived from the random pref_token, never
    from the address."""
    digest = hashlib.sha256(f"{subscriber.pref_token}{period}".encode()).hexdigest()[:40]
    return f"<{digest}@{sender_domain(config)}>"


__all__ = ["Entry", "RenderedDigest", "digest_message_id", "render_digest", "render_many"]
