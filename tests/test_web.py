"""The web front's pages, in process (httpx ASGITransport), on SQLite and PostgreSQL, with
confirmation emails going through a real SMTP server on 127.0.0.1."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from digestbot import clock
from digestbot.store import Feedback, UsedToken, open_store
from digestbot.tokens import Tokens

from .smtp_sink import SmtpSink
from .test_web_support import (
    SECRET,
    add_papers,
    add_reader,
    client_for,
    csrf,
    links_in,
    stored_subscriber,
    subscribe_form,
    web_app,
)

pytestmark = pytest.mark.anyio


_sub = stored_subscriber
_add = add_reader


def _token(purpose: str, value: object) -> str:
    return Tokens(SECRET).dumps(purpose, value)


async def test_home_shows_form_and_preview_of_latest_listing(tmp_path: Path, db_url: str) -> None:
    app = web_app(tmp_path, db_url)
    add_papers(app.state.site.store)
    async with client_for(app) as client:
        page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert 'name="csrf_token"' in page.text and 'name="email"' in page.text
    assert "digestbot_csrf=" in page.headers["set-cookie"]
    titles = re.findall(r'class="paper-title" href="[^"]+"[^>]*>([^<]+)<', page.text)
    # the latest day only, most upvoted first, unvoted last; the title is escaped
    assert titles == [
        "Diffusion Models for Speech",
        "Agents That &lt;b&gt;Plan&lt;/b&gt;",
        "Sparse Autoencoders at Scale",
        "A Quiet Paper",
    ]
    assert "https://huggingface.co/papers/2603.00003" in page.text
    assert "Old but loved" not in page.text


async def test_home_without_papers_says_so(tmp_path: Path, db_url: str) -> None:
    async with client_for(web_app(tmp_path, db_url)) as client:
        page = await client.get("/")
    assert page.status_code == 200
    assert "No papers have been collected yet" in page.text


async def test_subscribe_confirm_flow(tmp_path: Path, db_url: str, smtp_sink: SmtpSink) -> None:
    app = web_app(tmp_path, db_url, smtp_sink)
    async with client_for(app) as client:
        token = await csrf(client)
        page = await client.post("/subscribe", data=subscribe_form(token, "Ada@Example.org"))
        assert page.status_code == 200
        assert "Check your inbox" in page.text and "Ada@example.org" in page.text
        sub = _sub(db_url, "ada@example.org")
        assert sub is not None and sub.status == "pending" and sub.confirmed_at is None
        assert sub.keywords == ["diffusion models", "speech recognition"]
        assert sub.timezone == "Europe/Berlin"

        assert smtp_sink.recipients() == {"Ada@example.org": 1}
        message = smtp_sink.received[0].message
        assert message["Subject"] == "Confirm your digestbot subscription"
        assert "ada@example.org" not in "".join(links_in(smtp_sink)).lower()
        confirm = [p for p in links_in(smtp_sink) if p.startswith("/confirm/")]
        assert len(confirm) == 1
        html = message.get_body(("html",)).get_content()
        assert "Confirm my subscription" in html and confirm[0] in html

        # GET changes nothing: link scanners in mail systems open every link
        page = await client.get(confirm[0])
        assert page.status_code == 200 and "Confirm my subscription" in page.text
        assert _sub(db_url, "ada@example.org").status == "pending"  # type: ignore[union-attr]

        token = await csrf(client, confirm[0])
        done = await client.post(confirm[0], data={"csrf_token": token})
        assert done.status_code == 303
        assert done.headers["location"].startswith("/preferences/")
        assert done.headers["location"].endswith("?welcome=1")
        sub = _sub(db_url, "ada@example.org")
        assert sub is not None and sub.status == "active" and sub.confirmed_at is not None

        prefs = await client.get(done.headers["location"])
        assert prefs.status_code == 200 and "You are subscribed." in prefs.text
        assert prefs.headers["cache-control"] == "no-store"

        # single use: the link now only says "already subscribed"
        again = await client.post(confirm[0], data={"csrf_token": token})
        assert again.status_code == 200 and "You are already subscribed" in again.text
    store = open_store(db_url)
    with store.session() as s:
        assert len(s.scalars(select(UsedToken)).all()) == 1
    store.dispose()


async def test_spent_link_after_unsubscribe_is_gone(
    tmp_path: Path, db_url: str, smtp_sink: SmtpSink
) -> None:
    app = web_app(tmp_path, db_url, smtp_sink)
    async with client_for(app) as client:
        token = await csrf(client)
        await client.post("/subscribe", data=subscribe_form(token, "bo@example.org"))
        confirm = next(p for p in links_in(smtp_sink) if p.startswith("/confirm/"))
        await client.post(confirm, data={"csrf_token": token})
        sub = _sub(db_url, "bo@example.org")
        assert sub is not None
        unsub = "/unsubscribe/" + _token("unsubscribe", sub.pref_token)
        await client.post(unsub, data={"List-Unsubscribe": "One-Click"})
        again = await client.post(confirm, data={"csrf_token": token})
    assert again.status_code == 410
    assert "already been used" in again.text
    assert _sub(db_url, "bo@example.org").status == "unsubscribed"  # type: ignore[union-attr]


async def test_same_answer_for_known_address(
    tmp_path: Path, db_url: str, smtp_sink: SmtpSink
) -> None:
    _add(db_url, "known@example.org", status="active")
    app = web_app(tmp_path, db_url, smtp_sink)
    async with client_for(app) as client:
        token = await csrf(client)
        known = await client.post(
            "/subscribe", data=subscribe_form(token, "known@example.org", keywords="spam")
        )
        new = await client.post("/subscribe", data=subscribe_form(token, "fresh@example.org"))
    assert known.status_code == new.status_code == 200
    assert known.text.replace("known@", "X@") == new.text.replace("fresh@", "X@")
    sub = _sub(db_url, "known@example.org")
    # a stranger cannot change an active reader's settings through the form
    assert sub is not None and sub.status == "active" and sub.keywords == ["transformers"]
    reminder = next(m for m in smtp_sink.received if "known@example.org" in m.rcpt_tos).message
    assert reminder["Subject"] == "You are already subscribed to digestbot"
    body = reminder.get_body(("plain",)).get_content()
    assert "/confirm/" not in body and "/preferences/" in body


async def test_pending_and_unsubscribed_get_a_new_link(
    tmp_path: Path, db_url: str, smtp_sink: SmtpSink
) -> None:
    _add(db_url, "left@example.org", status="unsubscribed")
    app = web_app(tmp_path, db_url, smtp_sink)
    async with client_for(app) as client:
        token = await csrf(client)
        form = subscribe_form(token, "left@example.org", keywords="robotics", frequency="weekly")
        page = await client.post("/subscribe", data=form)
        assert page.status_code == 200
        sub = _sub(db_url, "left@example.org")
        assert sub is not None and sub.status == "pending"
        # a stranger's choices wait for the owner's confirmation
        assert sub.keywords == ["transformers"] and sub.frequency == "daily"
        confirm = next(p for p in links_in(smtp_sink) if p.startswith("/confirm/"))
        done = await client.post(confirm, data={"csrf_token": await csrf(client, confirm)})
        assert done.status_code == 303
    sub = _sub(db_url, "left@example.org")
    assert sub is not None and sub.status == "active"
    assert sub.keywords == ["robotics"] and sub.frequency == "weekly"
    assert sub.pending_prefs is None and sub.confirm_nonce is None


async def test_invalid_form_is_shown_again_with_errors(tmp_path: Path, db_url: str) -> None:
    app = web_app(tmp_path, db_url)
    async with client_for(app) as client:
        token = await csrf(client)
        form = subscribe_form(token, "not-an-address", keywords=" , ", timezone="Mars/Olympus")
        page = await client.post("/subscribe", data=form)
    assert page.status_code == 422
    assert page.text.count('class="field-error"') == 3
    assert "not-an-address" in page.text  # what was typed stays in the form
    assert "unknown time zone" in page.text
    assert "Give at least one interest" in page.text
    assert _sub(db_url, "not-an-address") is None


async def test_expired_and_forged_confirm_links(tmp_path: Path, db_url: str) -> None:
    sub = _add(db_url, "late@example.org", status="pending")
    with clock.moved_to(clock.now() - timedelta(hours=3)):
        old = _token("confirm", sub.pref_token)
    app = web_app(tmp_path, db_url, web__confirm_hours=2)
    async with client_for(app) as client:
        expired = await client.get(f"/confirm/{old}")
        forged = await client.get(f"/confirm/{old[:-3]}abc")
        other_purpose = await client.get("/confirm/" + _token("preferences", sub.pref_token))
        other_secret = await client.get(
            "/confirm/" + Tokens("x" * 32).dumps("confirm", sub.pref_token)
        )
    assert expired.status_code == 410 and "This link has expired" in expired.text
    for page in (forged, other_purpose, other_secret):
        assert page.status_code == 400
        assert "This link is not valid" in page.text
    assert _sub(db_url, "late@example.org").status == "pending"  # type: ignore[union-attr]


async def test_unsubscribe_page_button_and_one_click(tmp_path: Path, db_url: str) -> None:
    sub = _add(db_url, "u@example.org")
    other = _add(db_url, "other@example.org")
    path = "/unsubscribe/" + _token("unsubscribe", sub.pref_token)
    app = web_app(tmp_path, db_url)
    async with client_for(app) as client:
        page = await client.get(path)
        assert page.status_code == 200 and "Unsubscribe?" in page.text
        assert _sub(db_url, "u@example.org").status == "active"  # type: ignore[union-attr]
        token = CSRF_RE.search(page.text).group(1)  # type: ignore[union-attr]
        for _ in range(2):  # idempotent
            done = await client.post(path, data={"csrf_token": token})
            assert done.status_code == 200 and "You are unsubscribed" in done.text
        assert _sub(db_url, "u@example.org").status == "unsubscribed"  # type: ignore[union-attr]
        assert _sub(db_url, "other@example.org").status == "active"  # type: ignore[union-attr]

    # RFC 8058: a mail provider's POST, no cookie, no page
    path = "/unsubscribe/" + _token("unsubscribe", other.pref_token)
    async with client_for(web_app(tmp_path, db_url)) as provider:
        for _ in range(2):
            one = await provider.post(path, data={"List-Unsubscribe": "One-Click"})
            assert one.status_code == 200 and one.text == "Unsubscribed.\n"
        multipart = await provider.post(path, files={"List-Unsubscribe": (None, "One-Click")})
        assert multipart.status_code == 200
    assert _sub(db_url, "other@example.org").status == "unsubscribed"  # type: ignore[union-attr]


CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


async def test_preferences_show_and_save(tmp_path: Path, db_url: str) -> None:
    sub = _add(db_url, "p@example.org", keywords="vision")
    other = _add(db_url, "q@example.org", keywords="audio")
    path = "/preferences/" + _token("preferences", sub.pref_token)
    app = web_app(tmp_path, db_url)
    async with client_for(app) as client:
        page = await client.get(path)
        assert page.status_code == 200
        assert ">vision</textarea>" in page.text
        assert f"http://testserver/feeds/{sub.feed_token}.rss" in page.text
        assert f"http://testserver/feeds/{sub.feed_token}.atom" in page.text
        token = CSRF_RE.search(page.text).group(1)  # type: ignore[union-attr]
        form = {
            "csrf_token": token,
            "keywords": "vision, robotics",
            "frequency": "weekly",
            "weekday": "4",
            "send_hour": "17",
            "timezone": "America/New_York",
            "formats": "both",
            "max_items": "5",
        }
        saved = await client.post(path, data=form)
        assert saved.status_code == 303 and saved.headers["location"] == path + "?saved=1"
        shown = await client.get(saved.headers["location"])
        assert "Your preferences are saved." in shown.text
        bad = await client.post(path, data={**form, "max_items": "500", "send_hour": "24"})
        assert bad.status_code == 422 and bad.text.count('class="field-error"') == 2
    got = _sub(db_url, "p@example.org")
    assert got is not None
    assert (got.keywords, got.frequency, got.weekday, got.send_hour) == (
        ["vision", "robotics"],
        "weekly",
        4,
        17,
    )
    assert (got.timezone, got.formats, got.max_items) == ("America/New_York", "both", 5)
    # the token names one subscriber; the other one is untouched
    assert _sub(db_url, "q@example.org").keywords == ["audio"]  # type: ignore[union-attr]
    assert other.pref_token != sub.pref_token


async def test_resubscribe_from_preferences(tmp_path: Path, db_url: str) -> None:
    sub = _add(db_url, "back@example.org", status="unsubscribed")
    path = "/preferences/" + _token("preferences", sub.pref_token)
    async with client_for(web_app(tmp_path, db_url)) as client:
        token = await csrf(client, path)
        page = await client.post(path, data={"csrf_token": token, "action": "resubscribe"})
        assert page.status_code == 303
        shown = await client.get(page.headers["location"])
    assert "you are subscribed again" in shown.text
    assert _sub(db_url, "back@example.org").status == "active"  # type: ignore[union-attr]


async def test_feedback_more_and_less(tmp_path: Path, db_url: str) -> None:
    app = web_app(tmp_path, db_url)
    add_papers(app.state.site.store)
    sub = _add(db_url, "f@example.org")
    more = "/feedback/" + _token("feedback", {"s": sub.pref_token, "p": "2603.00002", "d": "more"})
    less = "/feedback/" + _token("feedback", {"s": sub.pref_token, "p": "2603.00002", "d": "less"})
    async with client_for(app) as client:
        page = await client.get(more)
        assert page.status_code == 200 and "Show me more like this" in page.text
        token = CSRF_RE.search(page.text).group(1)  # type: ignore[union-attr]
        with app.state.site.store.session() as s:
            assert s.scalars(select(Feedback)).all() == []  # GET records nothing
        done = await client.post(more, data={"csrf_token": token})
        assert done.status_code == 200 and "Thanks, noted" in done.text
        with app.state.site.store.session() as s:
            assert [(f.paper_id, f.value) for f in s.scalars(select(Feedback))] == [
                ("2603.00002", 1)
            ]
        await client.post(less, data={"csrf_token": token})
        with app.state.site.store.session() as s:
            assert [f.value for f in s.scalars(select(Feedback))] == [-1]
        unknown = "/feedback/" + _token("feedback", {"s": sub.pref_token, "p": "nope", "d": "more"})
        missing = await client.get(unknown)
        assert missing.status_code == 404
        sideways = "/feedback/" + _token("feedback", {"s": sub.pref_token, "p": "x", "d": "up"})
        assert (await client.get(sideways)).status_code == 400


async def test_healthz_and_error_pages(tmp_path: Path, db_url: str) -> None:
    async with client_for(web_app(tmp_path, db_url)) as client:
        health = await client.get("/healthz")
        missing = await client.get("/no/such/page")
        missing_json = await client.get("/nope", headers={"accept": "application/json"})
        gone = await client.get("/preferences/" + _token("preferences", "no-such-reader"))
        wrong_method = await client.delete("/")
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["database"] == "ok"
    assert missing.status_code == 404 and "Error 404" in missing.text
    assert "There is nothing at this address" in missing.text
    assert missing_json.status_code == 404 and missing_json.json()["status"] == 404
    assert gone.status_code == 404 and "no longer exists" in gone.text
    assert wrong_method.status_code == 405 and "Error 405" in wrong_method.text


@pytest.mark.parametrize("utf8", [False, True], ids=["relay-without-smtputf8", "relay-with-it"])
async def test_a_non_ascii_address_is_refused_on_the_form_when_the_relay_cannot_take_it(
    tmp_path: Path, db_url: str, utf8: bool
) -> None:
    sink = SmtpSink(enable_SMTPUTF8=utf8).start()
    try:
        app = web_app(tmp_path, db_url, sink)
        async with client_for(app) as client:
            token = await csrf(client)
            page = await client.post("/subscribe", data=subscribe_form(token, "josé@example.org"))
            # an ASCII address on the same relay goes on as before
            token = await csrf(client)
            plain = await client.post("/subscribe", data=subscribe_form(token, "jose@example.org"))
        assert plain.status_code == 200 and _sub(db_url, "jose@example.org") is not None
        if utf8:
            assert page.status_code == 200 and "Check your inbox" in page.text
            assert _sub(db_url, "josé@example.org") is not None
            assert sink.recipients() == {"josé@example.org": 1, "jose@example.org": 1}
        else:
            # told the truth on the form, not "check your inbox" for a mail that never comes
            assert page.status_code == 422
            assert "Check your inbox" not in page.text
            assert "cannot deliver to such addresses" in page.text
            assert _sub(db_url, "josé@example.org") is None
            assert sink.recipients() == {"jose@example.org": 1}
    finally:
        sink.stop()
