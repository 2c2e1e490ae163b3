"""Links that can be revoked: new tokens from the command line or by the reader's own
request, and more/less-like-this links that expire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from digestbot import clock
from digestbot.cli import main
from digestbot.tokens import Tokens

from .conftest import new_store
from .smtp_sink import SinkHandler, SmtpSink
from .test_web_support import (
    CSRF,
    SECRET,
    add_papers,
    add_reader,
    client_for,
    links_in,
    stored_subscriber,
    web_app,
)


def _link(purpose: str, value: object) -> str:
    return f"/{purpose}/" + Tokens(SECRET).dumps(purpose, value)


@pytest.mark.anyio
async def test_new_links_button_mails_fresh_links_and_retires_the_old(
    tmp_path: Path, db_url: str, smtp_sink: SmtpSink
) -> None:
    sub = add_reader(db_url, "ada@example.org", formats="both")
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    (feeds / f"{sub.feed_token}.atom").write_text("<feed/>")  # as the run left it
    old_pages = [_link("preferences", sub.pref_token), _link("unsubscribe", sub.pref_token)]
    app = web_app(tmp_path, db_url, smtp_sink)
    async with client_for(app) as client:
        page = await client.get(old_pages[0])
        assert "Email me new links" in page.text
        token = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
        done = await client.post(old_pages[0], data={"csrf_token": token, "action": "new_links"})
        assert done.status_code == 200
        assert "New links are on their way" in done.text and "ada@example.org" in done.text
        assert smtp_sink.recipients() == {"ada@example.org": 1}
        assert smtp_sink.received[-1].message["Subject"] == "Your new digestbot links"
        fresh = links_in(smtp_sink)
        assert {p.split("/")[1] for p in fresh} == {"preferences", "unsubscribe"}
        for path in old_pages:
            gone = await client.get(path)
            assert gone.status_code == 404, path
        assert (await client.get(f"/feeds/{sub.feed_token}.atom")).status_code == 404
        for path in fresh:
            assert (await client.get(path)).status_code == 200, path
    now = stored_subscriber(db_url, "ada@example.org")
    assert now is not None and now.id == sub.id
    assert now.pref_token != sub.pref_token and now.feed_token != sub.feed_token
    assert not (feeds / f"{sub.feed_token}.atom").exists()


@pytest.mark.anyio
async def test_new_links_change_nothing_when_the_mail_is_refused(
    tmp_path: Path, sqlite_url: str
) -> None:
    sub = add_reader(sqlite_url, "ada@example.org")
    sink = SmtpSink(SinkHandler(rcpt_replies={"ada@example.org": "550 5.1.1 no such user"}))
    sink.start()
    try:
        app = web_app(tmp_path, sqlite_url, sink)
        async with client_for(app) as client:
            path = _link("preferences", sub.pref_token)
            page = await client.get(path)
            token = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
            failed = await client.post(path, data={"csrf_token": token, "action": "new_links"})
            assert failed.status_code == 503
            assert (await client.get(path)).status_code == 200  # the old links still work
    finally:
        sink.stop()
    assert stored_subscriber(sqlite_url, "ada@example.org").pref_token == sub.pref_token  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_feedback_links_expire_after_the_setting(tmp_path: Path, sqlite_url: str) -> None:
    sub = add_reader(sqlite_url, "ada@example.org")
    signed_at = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    with clock.moved_to(signed_at):
        more = _link("feedback", {"s": sub.pref_token, "p": "2603.00002", "d": "more"})
    app = web_app(tmp_path, sqlite_url, web__feedback_days=30)
    add_papers(app.state.site.store)
    async with client_for(app) as client:
        with clock.moved_to(signed_at + timedelta(days=29)):
            assert (await client.get(more)).status_code == 200
        with clock.moved_to(signed_at + timedelta(days=31)):
            late = await client.get(more)
            assert late.status_code == 410
            assert "This link has expired. Rate papers from a recent digest" in late.text
            # preferences links do not expire
            assert (await client.get(_link("preferences", sub.pref_token))).status_code == 200
    never = web_app(tmp_path, sqlite_url, web__feedback_days=0)
    async with client_for(never) as client:
        with clock.moved_to(signed_at + timedelta(days=3650)):
            assert (await client.get(more)).status_code == 200


def test_rotate_tokens_command(runner: CliRunner, tmp_path: Path) -> None:
    db = new_store(tmp_path / "r.db")
    ada = add_reader(db, "ada@example.org", formats="rss")
    bob = add_reader(db, "bob@example.org")
    (tmp_path / "feeds").mkdir()
    for kind in ("rss", "atom"):
        (tmp_path / "feeds" / f"{ada.feed_token}.{kind}").write_text("x")
    result = runner.invoke(main, ["subscribers", "rotate-tokens", "ada@example.org", "--db", db])
    assert (result.exit_code, result.output) == (
        0,
        "New links for ada@example.org\n"
        "Rotated the tokens of 1 subscriber: their old links and feed addresses no longer "
        "work.\n",
    )
    after = stored_subscriber(db, "ada@example.org")
    assert after is not None and (after.pref_token, after.feed_token) != (
        ada.pref_token,
        ada.feed_token,
    )
    assert list((tmp_path / "feeds").iterdir()) == []  # the old feed files went with them
    assert stored_subscriber(db, "bob@example.org").pref_token == bob.pref_token  # type: ignore[union-attr]
    every = runner.invoke(main, ["subscribers", "rotate-tokens", "--all", "--db", db])
    assert every.exit_code == 0 and "Rotated the tokens of 2 subscribers" in every.output
    none = runner.invoke(main, ["subscribers", "rotate-tokens", "--db", db])
    assert none.exit_code == 2
