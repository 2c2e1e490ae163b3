"""RSS and Atom feeds: valid for feedparser, stable ids, written atomically from the store."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest

from digestbot.render import feed_bytes_for, public_feeds, subscriber_feeds, write_feeds
from digestbot.render.clean import clean_text
from digestbot.store import Digest, DigestItem, Store

from .conftest import make_config
from .test_render_helpers import HOSTILE_TITLES, NOW, entries, paper, reader


def check(data: bytes, version: str) -> feedparser.FeedParserDict:
    parsed = feedparser.parse(data)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == version
    return parsed


def feed_entries(n: int = 3) -> list:
    return [(p, pick, NOW - timedelta(days=i)) for i, (p, pick) in enumerate(entries(n))]


def test_subscriber_feeds_are_valid_rss_and_atom(tmp_path: Path) -> None:
    config = make_config(tmp_path, str(tmp_path / "db.sqlite"))
    rss, atom = subscriber_feeds(reader(), feed_entries(), config=config)
    r = check(rss, "rss20")
    a = check(atom, "atom10")
    for feed in (r, a):
        assert [e.title for e in feed.entries] == [
            f"Sparse autoencoders reveal features in model {i}" for i in range(3)
        ]
        assert [e.id for e in feed.entries] == [
            f"urn:digestbot:paper:2411.0000{i}" for i in range(3)
        ]
        assert feed.entries[0].link == "https://huggingface.co/papers/2411.00000"
        assert "Matches your keyword “sparse autoencoders”" in feed.entries[0].summary
        assert feed.entries[0].published_parsed[:5] == (2026, 11, 23, 7, 0)
    assert b"<pubDate>Mon, 23 Nov 2026 07:00:00 +0000</pubDate>" in rss
    assert b"<published>2026-11-23T07:00:00+00:00</published>" in atom
    assert r.entries[0].guidislink is False
    assert a.feed.links[-1].href.endswith("/feeds/feedtoken0001abcdefghijkl.atom")
    # the same input gives the same bytes: no "now" inside, so unchanged files stay unchanged
    assert subscriber_feeds(reader(), feed_entries(), config=config) == (rss, atom)


def test_empty_and_public_feeds(tmp_path: Path) -> None:
    config = make_config(tmp_path, str(tmp_path / "db.sqlite"))
    rss, atom = subscriber_feeds(reader(), [], config=config)
    assert check(rss, "rss20").entries == [] and check(atom, "atom10").entries == []
    rss, atom = public_feeds([paper(5), paper(1)], config=config)
    assert [e.id for e in check(atom, "atom10").entries] == [
        "urn:digestbot:paper:2411.00005",
        "urn:digestbot:paper:2411.00001",
    ]
    assert "115 upvotes" in check(rss, "rss20").entries[0].summary


@pytest.mark.parametrize("case", sorted(HOSTILE_TITLES))
def test_hostile_text_stays_text_in_xml(tmp_path: Path, case: str) -> None:
    config = make_config(tmp_path, str(tmp_path / "db.sqlite"))
    title = HOSTILE_TITLES[case]
    p = paper(0, title=title, abstract=title)
    pick = entries(1)[0][1].__class__(p.id, 0.5, matched=(title[:20],))
    rss, atom = subscriber_feeds(reader(keywords=[title]), [(p, pick, NOW)], config=config)
    for data, version in ((rss, "rss20"), (atom, "atom10")):
        parsed = check(data, version)
        entry = parsed.entries[0]
        if entry.summary_detail.type == "text/html":
            # shown as HTML by readers: the markup must arrive as escaped text
            assert "<script" not in entry.summary
            if case == "script":
                assert "&lt;script&gt;alert(1)&lt;/script&gt;" in entry.summary
        else:
            assert entry.summary_detail.type == "text/plain"
            assert clean_text(title)[:200] in entry.summary
        if case in ("script", "cdata", "entity", "latex", "emoji"):
            assert entry.title == title
        if case == "control":
            assert entry.title == "Controlchars and [31mANSI[0m and a Bcc: evil@example.com"
        if case == "long":
            assert len(entry.title) <= 300
    assert b"<script>" not in rss and b"<script>" not in atom


def test_feed_pieces_match_feedgen_writing_every_feed(tmp_path: Path) -> None:
    """The pair filled in from cached pieces is byte-identical to feedgen writing it,
    for hostile text (in titles, keywords, why lines and categories), varying dates,
    category counts, and cold or warm caches."""
    from digestbot.render import feedcards
    from digestbot.render.digest import clear_caches

    config = make_config(tmp_path, str(tmp_path / "db.sqlite"))
    texts = [*HOSTILE_TITLES.values(), 'quo"te & <amp>\tx', "private \ue000use\ue000 char"]
    hostile = [paper(10 + i, title=t, abstract=t + ". " + t) for i, t in enumerate(texts)]
    pick = entries(1)[0][1].__class__
    items = [
        (p, pick(p.id, 0.5, matched=tuple(texts[i : i + 1 + i % 6])), NOW - timedelta(days=i))
        for i, p in enumerate(hostile)
    ]
    items += [(p, k, NOW - timedelta(hours=3)) for p, k in entries(4)]
    items.append((paper(40, upvotes=None), pick("2411.00040", 0.1), NOW))  # no reason given
    for sub in (reader(), reader(2, keywords=texts), reader(3, keywords=[])):
        # a paper's title holds the marker character: feedgen writes the pairs with it
        for some in (items, [i for i in items if "\ue000" not in i[0].title]):
            for cold in (True, False):
                if cold:
                    clear_caches()
                fast = subscriber_feeds(sub, some, config=config)
                assert fast == subscriber_feeds(sub, some, config=config, pieces=False)
            # the pieces were used, but not for the paper holding the marker
            assert all(feedcards._FRAMES.values()) and len(feedcards._ENTRIES) >= 10
            assert (None in feedcards._ENTRIES.values()) == (some is items)


def _seed(store: Store, now: datetime) -> None:
    with store.session() as s:
        s.add_all([paper(i, first_seen_at=now - timedelta(hours=i)) for i in range(6)])
        s.add_all(
            [
                reader(1, formats="rss"),
                reader(2, formats="both"),
                reader(3, formats="email"),
                reader(4, formats="rss", status="unsubscribed"),
            ]
        )
        s.flush()
        states = {1: ["sent", "queued", "failed"], 2: ["feed_only"]}
        for sub_id, digest_states in states.items():
            for d, state in enumerate(digest_states):
                digest = Digest(
                    subscriber_id=sub_id,
                    period=f"2026-11-{20 + d}/daily",
                    state=state,
                    created_at=now - timedelta(days=3 - d),
                    message_id=f"<{sub_id}.{d}@x>",
                    recipient="r@example.org",
                )
                s.add(digest)
                s.flush()
                for rank in range(2):
                    pid = f"2411.{(d * 2 + rank):05d}"
                    why = {"matched": ["sparse autoencoders"], "similar_to": None}
                    s.add(
                        DigestItem(digest_id=digest.id, paper_id=pid, rank=rank, score=0.5, why=why)
                    )


def test_write_feeds_from_the_store(store: Store, tmp_path: Path) -> None:
    config = make_config(tmp_path, store.url, digest__feed_items=3)
    _seed(store, NOW)
    folder = tmp_path / "feeds"
    folder.mkdir()
    stale = folder / "oldreadertoken0000000000.rss"
    stale.write_text("gone")
    other = folder / "README.txt"
    other.write_text("keep me")
    calls: list[tuple[int, int]] = []
    assert write_feeds(store, config, progress=lambda d, t: calls.append((d, t))) == 2
    assert calls == [(1, 2), (2, 2)]
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        "README.txt",
        "feedtoken0001abcdefghijkl.atom",
        "feedtoken0001abcdefghijkl.rss",
        "feedtoken0002abcdefghijkl.atom",
        "feedtoken0002abcdefghijkl.rss",
        "new.atom",
        "new.rss",
    ]
    one = check((folder / "feedtoken0001abcdefghijkl.atom").read_bytes(), "atom10")
    # newest non-failed digest first (queued: papers 2, 3), then the sent one (0, 1),
    # cut at digest.feed_items; the failed digest's papers 4 and 5 never show
    assert [e.id.rsplit(":", 1)[1] for e in one.entries] == [
        "2411.00002",
        "2411.00003",
        "2411.00000",
    ]
    two = check((folder / "feedtoken0002abcdefghijkl.rss").read_bytes(), "rss20")
    assert [e.id.rsplit(":", 1)[1] for e in two.entries] == ["2411.00000", "2411.00001"]
    public = check((folder / "new.rss").read_bytes(), "rss20")
    assert [e.id.rsplit(":", 1)[1] for e in public.entries] == [
        "2411.00000",
        "2411.00001",
        "2411.00002",
    ]
    assert oct((folder / "new.rss").stat().st_mode & 0o777) == "0o644"

    # a second run rewrites nothing that did not change
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    os.utime(folder / "new.rss", ns=(1, 1))
    write_feeds(store, config)
    assert (folder / "new.rss").stat().st_mtime_ns == 1
    after = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert {k: v for k, v in after.items() if k != "new.rss"} == {
        k: v for k, v in before.items() if k != "new.rss"
    }
    assert not list(folder.glob(".*.tmp"))

    # served on the fly, the same bytes
    assert (
        feed_bytes_for(store, config, "feedtoken0001abcdefghijkl", "atom")
        == (folder / "feedtoken0001abcdefghijkl.atom").read_bytes()
    )
    assert feed_bytes_for(store, config, "new", "rss") == (folder / "new.rss").read_bytes()
    assert feed_bytes_for(store, config, "feedtoken0004abcdefghijkl", "rss") is None
    assert feed_bytes_for(store, config, "nobody", "rss") is None
    with pytest.raises(ValueError):
        feed_bytes_for(store, config, "new", "json")


def test_write_feeds_reports_an_unwritable_folder(sqlite_store: Store, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    config = make_config(tmp_path, sqlite_store.url, digest__feeds_dir=str(blocker / "feeds"))
    from digestbot.errors import RenderError

    with pytest.raises(RenderError) as info:
        write_feeds(sqlite_store, config)
    assert info.value.field == "digest.feeds_dir"
    assert "writable" in (info.value.hint or "")


def test_naive_times_from_sqlite_come_out_utc(tmp_path: Path) -> None:
    config = make_config(tmp_path, str(tmp_path / "db.sqlite"))
    naive = [(p, k, when.replace(tzinfo=None)) for p, k, when in feed_entries(1)]
    rss, _ = subscriber_feeds(reader(), naive, config=config)
    assert check(rss, "rss20").entries[0].published_parsed[:4] == (2026, 11, 23, 7)
    assert UTC  # keeps the import honest for readers of this test
