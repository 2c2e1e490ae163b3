"""The whole digest in the browser: a run queues a reader's digest, and the signed link
in its message opens every paper in full on the web front."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import select

from digestbot import clock
from digestbot.pipeline import run_once
from digestbot.store import Digest
from digestbot.store.subscribers import add_subscriber
from digestbot.tokens import Tokens

from .test_web_support import add_papers, client_for, web_app

pytestmark = pytest.mark.anyio
SECRET = "test-secret-key-not-for-production"
T0 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


async def test_view_in_browser_shows_the_stored_digest(tmp_path: Path, db_url: str) -> None:
    app = web_app(tmp_path, db_url)
    site = app.state.site
    with clock.moved_to(T0):
        add_papers(site.store)
        with site.store.session() as s:
            sub = add_subscriber(
                s, email="v@example.org", keywords="sparse autoencoders, diffusion, agents, plan"
            )
            pref = sub.pref_token
    run_once(site.store, site.config, now=T0 + timedelta(days=1), ingest=False, send=False)
    with site.store.session() as s:
        digest = s.scalars(select(Digest)).one()
        message = message_from_bytes(digest.message, policy=policy.default)
        period = digest.period
    html = message.get_body(("html",)).get_content()
    link = re.search(r'href="http://testserver(/digest/[\w.-]+)"', html)
    assert link is not None
    async with client_for(app) as client:
        page = await client.get(link.group(1))
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-store"
        assert "style-src 'unsafe-inline'" in page.headers["content-security-policy"]
        assert "script-src" not in page.headers["content-security-policy"]
        for title in ("Sparse Autoencoders at Scale", "Agents That &lt;b&gt;Plan&lt;/b&gt;"):
            assert title in page.text
        assert page.text.count("<h2") == html.count("<h2")
        assert "/feedback/" in page.text and "View this digest in your browser" not in page.text
        # forged, for another purpose, for a digest that does not exist
        forged = await client.get(link.group(1)[:-3] + "abc")
        assert forged.status_code == 400
        tokens = Tokens(SECRET)
        other = tokens.dumps("feedback", {"s": pref, "p": period})
        assert (await client.get(f"/digest/{other}")).status_code == 400
        gone = tokens.dumps("digest", {"s": pref, "p": "2020-01-01/daily"})
        missing = await client.get(f"/digest/{gone}")
        assert missing.status_code == 404 and "no longer kept" in missing.text
        odd = tokens.dumps("digest", "just a string")
        assert (await client.get(f"/digest/{odd}")).status_code == 400
