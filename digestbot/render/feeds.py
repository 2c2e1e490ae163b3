"""RSS 2.0 and Atom feeds (feedgen): one pair per reader, and a public feed of new papers.

Feeds are static files named by the reader's unguessable ``feed_token`` so any web server
can serve them; ``write_feeds`` rewrites them all, each atomically (temporary file, then
``os.replace``), and leaves a file untouched when its content has not changed, so
``Last-Modified`` and ETags stay useful to feed readers.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from feedgen.feed import FeedGenerator
from sqlalchemy import func, select

from ..config import Config
from ..errors import RenderError
from ..files import write_atomic
from ..scoring.picks import Pick
from ..store import Digest, DigestItem, Paper, Store, Subscriber
from . import feedcards, links
from .clean import clean_text, clean_word
from .feedcards import (
    CATEGORY,
    CATEGORY_ATTRIBUTE,
    WHY_HTML,
    WHY_RAW,
    attribute,
    dates,
    documents,
    text,
    why_html,
)
from .views import PaperView, paper_view
from .why import why_text

log = logging.getLogger(__name__)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PUBLIC = "new"
KINDS = ("rss", "atom")
_TOKEN_FILE = re.compile(r"^[A-Za-z0-9_-]{16,}\.(rss|atom)$")
CHUNK = 500

Progress = Callable[[int, int], None]


def paper_guid(paper_id: str) -> str:
    """The same id in every feed and forever: readers use it to spot entries seen before."""
    return f"urn:digestbot:paper:{paper_id}"


def _generator(
    config: Config, title: str, feed_id: str, description: str, self_url: str
) -> FeedGenerator:
    """A feed's own elements, titled "{from_name}: {title}"."""
    name = clean_text(config["digest.from_name"]) or "digestbot"
    fg = FeedGenerator()
    fg.id(feed_id)
    fg.title(f"{name}: {title}")
    fg.subtitle(description)
    fg.author({"name": name})
    fg.link(href=links.site(config) + "/", rel="alternate")
    # self_url is the feed's address without its extension: .atom here, .rss in the RSS
    # file (see feedcards.documents)
    fg.link(href=self_url + ".atom", rel="self")
    fg.language("en")
    fg.generator("digestbot", uri="https://github.com/digestbot/digestbot")
    return fg


def _entry(
    fg: FeedGenerator, view: PaperView, why: str, when: datetime, categories: Iterable[str]
) -> None:
    guid = paper_guid(view.paper_id)
    fe = fg.add_entry(order="append")
    fe.id(guid)
    fe.guid(guid, permalink=False)
    fe.title(view.title)
    fe.link(href=view.url)
    # One HTML paragraph per part, the text escaped (hostile markup in a title or
    # abstract shows as text): RSS readers take <description> as HTML, and Atom's summary
    # says type="html". Plain text with blank lines ran together in readers.
    parts = [why, view.authors, view.meta, view.snippet]
    named = (("arXiv", view.abs_url), ("PDF", view.pdf_url), (view.code_label, view.code_url))
    links_line = " · ".join(f'<a href="{html.escape(u)}">{name}</a>' for name, u in named if u)
    body = "".join(f"<p>{html.escape(p, quote=False)}</p>" for p in parts if p)
    fe.summary(body + (f"<p>{links_line}</p>" if links_line else ""), type="html")
    for name in view.author_names:
        fe.author({"name": name})
    for term in categories:
        fe.category(term=term)
    fe.published(when)
    fe.updated(when)


# an entry for feedcards.frame to cut out of the document around it
_DUMMY = paper_view(Paper(id="dummy", arxiv_id="dummy", title="dummy", abstract=""))


def _finish(fg: FeedGenerator, newest: datetime) -> tuple[bytes, bytes]:
    # fixed to the newest entry, not "now": an unchanged feed keeps the same bytes
    fg.updated(newest)
    fg.lastBuildDate(newest)
    return documents(fg)


def _distinct(when: datetime, last: datetime | None) -> datetime:
    """``when``, or a second before the previous entry's date: the papers of one digest
    share its date, and feed readers (and the W3C validator) want one per entry."""
    return when if last is None or when < last else last - timedelta(seconds=1)


def _aware(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def subscriber_feeds(
    subscriber: Subscriber,
    entries: Sequence[tuple[Paper, Pick, datetime]],
    *,
    config: Config,
    pieces: bool = True,
) -> tuple[bytes, bytes]:
    """A reader's recent picks as (RSS 2.0, Atom) documents, newest first.

    With ``pieces``, from the entries and document feedgen wrote once per process (see
    feedcards.py); without, feedgen writes the whole pair (same bytes, slower: for tests).
    """
    keywords = [clean_word(k) for k in (subscriber.keywords or []) if clean_word(k)]
    description = (
        "Papers picked for your interests: " + ", ".join(keywords[:6])
        if keywords
        else "Papers picked for your interests."
    )
    token_hash = hashlib.sha256(subscriber.feed_token.encode()).hexdigest()[:32]
    feed_id = f"urn:digestbot:feed:{token_hash}"
    seen: set[str] = set()
    items: list[tuple[PaperView, str, datetime, list[str]]] = []
    last: datetime | None = None
    for paper, pick, when in entries:
        view = paper_view(paper)
        if view.paper_id in seen:
            continue
        seen.add(view.paper_id)
        # strictly older than the entry before it: the first is the newest
        when = last = _distinct(_aware(when), last)
        matched = [w for w in map(clean_word, pick.matched) if w]
        items.append((view, why_text(view.upvotes, pick), when, matched[:5]))
    newest = items[0][2] if items else _aware(subscriber.created_at or EPOCH)
    head = partial(_generator, config, "your papers")
    self_url = links.feed_urls(config, subscriber.feed_token)["atom"][: -len(".atom")]
    feed = {"feed_id": feed_id, "description": description, "self_url": self_url}
    if pieces and items:
        pair = _from_pieces(
            (config["digest.from_name"], links.site(config)), head, items, newest, feed
        )
        if pair is not None:
            return pair
    fg = head(**feed)
    for item in items:
        _entry(fg, *item)
    return _finish(fg, newest)


def _from_pieces(
    key: Any,
    head: feedcards.HeadWriter,
    items: Sequence[tuple[PaperView, str, datetime, list[str]]],
    newest: datetime,
    feed: dict[str, str],
) -> tuple[bytes, bytes] | None:
    """The pair filled in from cached pieces, or None when feedgen's output for one of
    them could not be cut at its markers (then feedgen writes the pair)."""
    frame = feedcards.frame(key, head, _entry, _DUMMY)
    if frame is None:
        return None
    head_values = feedcards.escaped(feed)
    rss_newest, atom_newest = dates(newest)
    rss_values = {**head_values, "newest": rss_newest}
    atom_values = {**head_values, "newest": atom_newest}
    (rss_before, rss_after), (atom_before, atom_after) = frame["rss"], frame["atom"]
    rss: list[str] = []
    atom: list[str] = []
    rss_before.fill(rss_values, rss)
    atom_before.fill(atom_values, atom)
    for view, why, when, categories in items:
        entry = feedcards.entry(view, _entry, bool(why), len(categories))
        if not entry:
            return None
        fields = {WHY_RAW: text(why), WHY_HTML: text(why_html(why))}
        for i, term in enumerate(categories):
            fields[CATEGORY[i]] = text(term)
            fields[CATEGORY_ATTRIBUTE[i]] = attribute(term)
        fields["when"], atom_when = dates(when)  # dates need no escaping
        entry["rss"].fill(fields, rss)
        fields["when"] = atom_when
        entry["atom"].fill(fields, atom)
    rss_after.fill(rss_values, rss)
    atom_after.fill(atom_values, atom)
    return "".join(rss).encode("utf-8"), "".join(atom).encode("utf-8")


def public_feeds(papers: Sequence[Paper], *, config: Config) -> tuple[bytes, bytes]:
    """New papers for everyone, in the order given (``write_feeds`` sorts by upvotes)."""
    fg = _generator(
        config,
        "new papers",
        "urn:digestbot:feed:new",
        "New research papers, most upvoted first.",
        links.feed_urls(config, PUBLIC)["atom"][: -len(".atom")],
    )
    newest = EPOCH
    last: datetime | None = None
    for paper in papers:
        when = last = _distinct(_aware(paper.first_seen_at or EPOCH), last)
        newest = max(newest, when)
        upvotes = f"{paper.upvotes} upvotes" if paper.upvotes else ""
        _entry(fg, paper_view(paper), upvotes, when, ())
    return _finish(fg, newest)


# --- reading the store -------------------------------------------------------------------


def stored_pick(paper_id: str, score: float, why: Any) -> Pick:
    """A digest item's pick as the store keeps it (score and the why JSON)."""
    why = why if isinstance(why, dict) else {}
    matched = why.get("matched") or ()
    similar_title = why.get("similar_title")
    respelled = why.get("respelled") or ()
    return Pick(
        paper_id=paper_id,
        score=float(score or 0.0),
        matched=tuple(str(m) for m in matched if isinstance(m, str)),
        similar_to=why.get("similar_to") if isinstance(why.get("similar_to"), str) else None,
        similar_title=similar_title if isinstance(similar_title, str) else None,
        respelled=tuple(
            (str(p[0]), str(p[1])) for p in respelled if isinstance(p, list) and len(p) == 2
        ),
        for_meaning=why.get("for_meaning") is True,
    )


def recent_entries(
    session: Any, subscriber_ids: Sequence[int], limit: int
) -> dict[int, list[tuple[Paper, Pick, datetime]]]:
    """Each reader's newest ``limit`` digest items (any state but failed), newest first."""
    rn = (
        func.row_number()
        .over(
            partition_by=Digest.subscriber_id,
            order_by=(Digest.created_at.desc(), Digest.id.desc(), DigestItem.rank),
        )
        .label("rn")
    )
    ranked = (
        select(
            Digest.subscriber_id,
            Digest.created_at,
            DigestItem.paper_id,
            DigestItem.score,
            DigestItem.why,
            rn,
        )
        .join(DigestItem, DigestItem.digest_id == Digest.id)
        .where(Digest.subscriber_id.in_(subscriber_ids), Digest.state != "failed")
        .subquery()
    )
    query = (
        select(ranked.c.subscriber_id, ranked.c.created_at, ranked.c.score, ranked.c.why, Paper)
        .join(Paper, Paper.id == ranked.c.paper_id)
        .where(ranked.c.rn <= limit)
        .order_by(ranked.c.subscriber_id, ranked.c.rn)
    )
    out: dict[int, list[tuple[Paper, Pick, datetime]]] = {i: [] for i in subscriber_ids}
    for sub_id, created, score, why, paper in session.execute(query):
        out[sub_id].append((paper, stored_pick(paper.id, score, why), _aware(created)))
    return out


def newest_papers(session: Any, limit: int) -> list[Paper]:
    """The ``limit`` papers seen most recently, most upvoted first."""
    papers = list(
        session.scalars(select(Paper).order_by(Paper.first_seen_at.desc(), Paper.id).limit(limit))
    )
    papers.sort(key=lambda p: (-(p.upvotes or 0), p.id))
    return papers


def _feeds_dir(config: Config) -> Path:
    folder = config.path("digest.feeds_dir")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RenderError(
            f"cannot create the feeds folder {folder}: {exc.strerror}",
            field="digest.feeds_dir",
            hint="Create it or point digest.feeds_dir at a writable folder.",
        ) from None
    return folder


def write_feeds(
    store: Store,
    config: Config,
    *,
    progress: Progress | None = None,
    failed: list[tuple[int, str]] | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Write every feed reader's RSS and Atom files, and the public ``new.rss``/``new.atom``.

    Readers are the active subscribers whose ``formats`` is ``rss`` or ``both``; files of
    readers who left are removed. ``progress(done, total)`` is called after each reader.
    A reader whose feed cannot be built is logged with the traceback, appended to
    ``failed`` (id, reason) and keeps their files as they were; the others go on. Once
    ``stop`` is set, no further chunk of readers is started and no file is removed.
    Returns the number of readers whose feeds were written.
    """
    folder = _feeds_dir(config)
    limit = int(config["digest.feed_items"])
    with store.session() as session:
        readers = list(
            session.scalars(
                select(Subscriber)
                .where(Subscriber.status == "active", Subscriber.formats.in_(("rss", "both")))
                .order_by(Subscriber.id)
            )
        )
        total = len(readers)
        keep = {f"{PUBLIC}.rss", f"{PUBLIC}.atom"}
        try:
            rss, atom = public_feeds(newest_papers(session, limit), config=config)
            write_atomic(folder / f"{PUBLIC}.rss", rss, skip_unchanged=True)
            write_atomic(folder / f"{PUBLIC}.atom", atom, skip_unchanged=True)
            done = 0
            for start in range(0, total, CHUNK):
                if stop is not None and stop.is_set():
                    return done
                chunk = readers[start : start + CHUNK]
                recent = recent_entries(session, [r.id for r in chunk], limit)
                for reader in chunk:
                    try:
                        rss, atom = subscriber_feeds(reader, recent[reader.id], config=config)
                    except Exception as exc:  # noqa: BLE001 - this reader's alone
                        log.exception("building the feeds of subscriber %d failed", reader.id)
                        if failed is not None:
                            failed.append((reader.id, f"{type(exc).__name__}: {exc}"))
                        keep.update(f"{reader.feed_token}.{kind}" for kind in KINDS)
                        continue
                    for kind, data in (("rss", rss), ("atom", atom)):
                        name = f"{reader.feed_token}.{kind}"
                        write_atomic(folder / name, data, skip_unchanged=True)
                        keep.add(name)
                    done += 1
                    if progress is not None:
                        progress(done, total)
            total = done
        except OSError as exc:
            raise RenderError(
                f"cannot write feeds in {folder}: {exc.strerror}",
                field="digest.feeds_dir",
                hint="Check that the folder is writable and the disk is not full.",
            ) from None
    for path in folder.iterdir():
        if _TOKEN_FILE.match(path.name) and path.name not in keep:
            path.unlink(missing_ok=True)
    return total


def remove_feed_files(config: Config, feed_token: str) -> None:
    """Delete a reader's written feed files now (their address was replaced), rather
    than at the next `write_feeds`, since the web front serves whatever files exist."""
    folder = config.path("digest.feeds_dir")
    for kind in ("rss", "atom"):
        path = folder / f"{feed_token}.{kind}"
        if _TOKEN_FILE.match(path.name):
            path.unlink(missing_ok=True)


def feed_bytes_for(store: Store, config: Config, feed_token: str, kind: str) -> bytes | None:
    """One feed built on the spot (``kind`` is ``rss`` or ``atom``; token ``new`` is the
    public feed), or None when no active reader has that token."""
    if kind not in KINDS:
        raise ValueError(f"kind must be 'rss' or 'atom', not {kind!r}")
    limit = int(config["digest.feed_items"])
    with store.session() as session:
        if feed_token == PUBLIC:
            pair = public_feeds(newest_papers(session, limit), config=config)
        else:
            reader = session.scalars(
                select(Subscriber).where(
                    Subscriber.feed_token == feed_token, Subscriber.status == "active"
                )
            ).first()
            if reader is None:
                return None
            recent = recent_entries(session, [reader.id], limit)[reader.id]
            pair = subscriber_feeds(reader, recent, config=config)
    return pair[0] if kind == "rss" else pair[1]
