"""Every feed kind as feed readers and the W3C validator see it (parsed with feedparser):
self links that name the file itself, the site as the RSS channel link, one date per
entry, descriptions in HTML paragraphs, authors on Atom entries."""

from __future__ import annotations

from datetime import UTC, datetime

import feedparser
import pytest

from digestbot.config import default_config
from digestbot.render import public_feeds, subscriber_feeds

from .test_render_helpers import NOW, SECRET, entries, paper, reader

CONFIG = default_config(web__secret_key=SECRET, digest__site_url="https://papers.example.org")
SITE = "https://papers.example.org/"
READER = "https://papers.example.org/feeds/feedtoken0001abcdefghijkl"
PUBLIC = "https://papers.example.org/feeds/new"


def kinds() -> dict[str, tuple[bytes, str]]:
    """Every feed kind with the address it is served at (a whole digest shares a date)."""
    items = [(p, pick, NOW) for p, pick in entries(4)]
    rss, atom = subscriber_feeds(reader(), items, config=CONFIG)
    slow_rss, slow_atom = subscriber_feeds(reader(), items, config=CONFIG, pieces=False)
    seen = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)
    new_rss, new_atom = public_feeds(
        [paper(i, first_seen_at=seen) for i in range(4)], config=CONFIG
    )
    return {
        "reader.rss": (rss, READER + ".rss"),
        "reader.atom": (atom, READER + ".atom"),
        "reader-feedgen.rss": (slow_rss, READER + ".rss"),
        "reader-feedgen.atom": (slow_atom, READER + ".atom"),
        "new.rss": (new_rss, PUBLIC + ".rss"),
        "new.atom": (new_atom, PUBLIC + ".atom"),
    }


@pytest.mark.parametrize("kind", sorted(kinds()))
def test_each_feed_kind(kind: str) -> None:
    data, url = kinds()[kind]
    parsed = feedparser.parse(data)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == ("rss20" if kind.endswith(".rss") else "atom10")
    # the self link is the file itself; the other link is the site's page
    links = {link["rel"]: link["href"] for link in parsed.feed.links}
    assert links["self"] == url
    assert links["alternate"] == SITE
    if kind.endswith(".rss"):
        assert f"<link>{SITE}</link>".encode() in data
        assert b".atom" not in data
    # one date per entry (the W3C validator refuses two entries with the same updated)
    dates = [
        e.updated_parsed if "updated_parsed" in e else e.published_parsed for e in parsed.entries
    ]
    assert len(parsed.entries) == 4
    assert len(set(dates)) == len(dates)
    assert dates == sorted(dates, reverse=True)  # newest first, in rank order
    for entry in parsed.entries:
        # HTML paragraphs, which readers show apart
        assert entry.summary.startswith("<p>") and entry.summary.count("<p>") >= 4
        assert entry.summary_detail.type == "text/html"
        assert "Ada Lovelace, Alan Turing, Grace Hopper" in entry.summary
        assert 'href="https://arxiv.org/abs/' in entry.summary
        if kind.endswith(".atom"):
            assert [a["name"] for a in entry.authors] == [
                "Ada Lovelace",
                "Alan Turing",
                "Grace Hopper",
            ]


def test_hostile_text_is_escaped_inside_the_html() -> None:
    p = paper(0, title="<script>x</script>", abstract="A <b>bold</b> claim & more. Then.")
    pick = entries(1)[0][1]
    rss, atom = subscriber_feeds(reader(), [(p, pick, NOW)], config=CONFIG)
    for data in (rss, atom):
        entry = feedparser.parse(data).entries[0]
        assert "A &lt;b&gt;bold&lt;/b&gt; claim &amp; more." in entry.summary
        assert "<b>" not in entry.summary
