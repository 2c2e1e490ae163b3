"""Feeds over HTTP: parsed back with feedparser, validators and 304s."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path

import feedparser
import pytest

from digestbot.render import write_feeds
from digestbot.store import Paper
from digestbot.store.subscribers import add_subscriber

from .test_web_support import add_papers, client_for, web_app

pytestmark = pytest.mark.anyio


async def test_public_feed_with_validators(tmp_path: Path, db_url: str) -> None:
    app = web_app(tmp_path, db_url)
    store = app.state.site.store
    add_papers(store)
    async with client_for(app) as client:
        first = await client.get("/feeds/new.rss")
        assert first.status_code == 200
        assert first.headers["content-type"] == "application/rss+xml; charset=utf-8"
        parsed = feedparser.parse(first.content)
        assert not parsed.bozo
        assert {e.title for e in parsed.entries} >= {"Diffusion Models for Speech"}
        etag, modified = first.headers["etag"], first.headers["last-modified"]
        assert etag.startswith('"') and modified.endswith("GMT")

        same = await client.get("/feeds/new.rss", headers={"If-None-Match": etag})
        assert same.status_code == 304 and same.content == b""
        assert same.headers["etag"] == etag
        weak = await client.get("/feeds/new.rss", headers={"If-None-Match": f'"x", W/{etag}'})
        assert weak.status_code == 304
        since = await client.get("/feeds/new.rss", headers={"If-Modified-Since": modified})
        assert since.status_code == 304
        other = await client.get("/feeds/new.rss", headers={"If-None-Match": '"other"'})
        assert other.status_code == 200 and other.content == first.content
        head = await client.head("/feeds/new.rss", headers={"If-None-Match": etag})
        assert head.status_code == 304

        with store.session() as s:
            s.add(
                Paper(
                    id="2603.00009",
                    arxiv_id="2603.00009",
                    title_key="brand new",
                    title="Brand New Result",
                    abstract="Fresh.",
                    listed_on=date(2026, 3, 4),
                    first_seen_at=datetime.now(UTC),
                    links=[],
                )
            )
        changed = await client.get("/feeds/new.rss", headers={"If-None-Match": etag})
        assert changed.status_code == 200 and changed.headers["etag"] != etag
        assert "Brand New Result" in {e.title for e in feedparser.parse(changed.content).entries}
        atom = await client.get("/feeds/new.atom")
        assert atom.headers["content-type"] == "application/atom+xml; charset=utf-8"
        assert feedparser.parse(atom.content).version == "atom10"


async def test_reader_feeds_and_unknown_tokens(tmp_path: Path, db_url: str) -> None:
    app = web_app(tmp_path, db_url)
    store = app.state.site.store
    with store.session() as s:
        reader = add_subscriber(s, email="r@example.org", keywords="speech", formats="both")
        gone = add_subscriber(s, email="g@example.org", keywords="x", status="unsubscribed")
        token, gone_token = reader.feed_token, gone.feed_token
    async with client_for(app) as client:
        rss = await client.get(f"/feeds/{token}.rss")
        atom = await client.get(f"/feeds/{token}.atom")
        assert rss.status_code == atom.status_code == 200
        assert not feedparser.parse(rss.content).bozo
        assert rss.headers["cache-control"] == "private, max-age=300"
        for path in (
            f"/feeds/{gone_token}.rss",
            "/feeds/" + "a" * 32 + ".rss",
            f"/feeds/{token}.json",
            "/feeds/short.rss",
        ):
            page = await client.get(path)
            assert page.status_code == 404, path
            assert "There is no feed at this address" in page.text, path
        traversal = await client.get("/feeds/..%2F..%2Fetc%2Fpasswd")
        assert traversal.status_code == 404 and "root:" not in traversal.text


async def test_static_feed_files_are_served_with_their_mtime(
    tmp_path: Path, sqlite_url: str
) -> None:
    app = web_app(tmp_path, sqlite_url)
    store = app.state.site.store
    add_papers(store)
    write_feeds(store, app.state.site.config)
    path = tmp_path / "feeds" / "new.rss"
    stamp = datetime(2026, 3, 3, 12, 0, tzinfo=UTC).timestamp()
    os.utime(path, (stamp, stamp))
    async with client_for(app) as client:
        page = await client.get("/feeds/new.rss")
        assert page.content == path.read_bytes()
        assert page.headers["last-modified"] == "Tue, 03 Mar 2026 12:00:00 GMT"
        later = await client.get(
            "/feeds/new.rss", headers={"If-Modified-Since": "Wed, 04 Mar 2026 00:00:00 GMT"}
        )
        earlier = await client.get(
            "/feeds/new.rss", headers={"If-Modified-Since": "Mon, 02 Mar 2026 00:00:00 GMT"}
        )
    assert later.status_code == 304 and earlier.status_code == 200
