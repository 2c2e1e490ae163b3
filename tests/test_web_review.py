"""Fixes from the security review: confirmation replay, rate-limit bypasses, stranger-chosen
text and settings, the unsubscribe page, subscribe timing, the CSRF cookie."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from digestbot.cli import main
from digestbot.store import Subscriber
from digestbot.tokens import Tokens
from digestbot.web import pages
from digestbot.web.ratelimit import RateLimiter

from .conftest import new_store
from .smtp_sink import SmtpSink, free_port
from .test_web_support import (
    SECRET,
    add_reader,
    client_for,
    csrf,
    links_in,
    stored_subscriber,
    subscribe_form,
    web_app,
)

pytestmark = pytest.mark.anyio
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _sub(db: str, email: str) -> Subscriber:
    sub = stored_subscriber(db, email)
    assert sub is not None
    return sub


_add = add_reader


def _confirm_link(sink: SmtpSink, index: int = -1) -> str:
    return next(p for p in links_in(sink, index) if p.startswith("/confirm/"))


def _twins(path: str) -> list[str]:
    """Other spellings of the same signed token: the signature's last character has
    unused bits, so several strings verify."""
    token = path.rsplit("/", 1)[1]
    tokens = Tokens(SECRET)
    out = []
    for c in B64:
        other = token[:-1] + c
        if other == token:
            continue
        try:
            tokens.loads("confirm", other)
        except Exception:
            continue
        out.append("/confirm/" + other)
    return out


async def test_old_confirm_link_never_activates_a_new_request(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink
) -> None:
    app = web_app(tmp_path, sqlite_url, smtp_sink)
    async with client_for(app) as client:
        token = await csrf(client)
        await client.post("/subscribe", data=subscribe_form(token, "v@example.org"))
        first = _confirm_link(smtp_sink)
        done = await client.post(first, data={"csrf_token": token})
        assert done.status_code == 303
        sub = _sub(sqlite_url, "v@example.org")
        await client.post(
            "/unsubscribe/" + Tokens(SECRET).dumps("unsubscribe", sub.pref_token),
            data={"List-Unsubscribe": "One-Click"},
        )
        # a stranger re-subscribes the address; the old link (any spelling) must not confirm
        await client.post("/subscribe", data=subscribe_form(token, "v@example.org"))
        assert _sub(sqlite_url, "v@example.org").status == "pending"
        twins = _twins(first)
        assert twins  # the attack needs these to exist
        for path in [first, *twins]:
            page = await client.post(path, data={"csrf_token": token})
            assert page.status_code == 410, path
        assert _sub(sqlite_url, "v@example.org").status == "pending"
        # a second pending request also retires the first pending request's link
        await client.post("/subscribe", data=subscribe_form(token, "v@example.org"))
        replaced = _confirm_link(smtp_sink, -2)
        latest = _confirm_link(smtp_sink)
        assert (await client.post(replaced, data={"csrf_token": token})).status_code == 410
        assert _sub(sqlite_url, "v@example.org").status == "pending"
        assert (await client.post(latest, data={"csrf_token": token})).status_code == 303
        # spent: its twins only say "already subscribed", and spend nothing new
        for path in _twins(latest):
            page = await client.post(path, data={"csrf_token": token})
            assert page.status_code == 200 and "already subscribed" in page.text
    assert _sub(sqlite_url, "v@example.org").status == "active"


async def test_confirm_token_carries_a_nonce(tmp_path: Path, sqlite_url: str) -> None:
    sub = _add(sqlite_url, "n@example.org", status="pending")
    bare = "/confirm/" + Tokens(SECRET).dumps("confirm", sub.pref_token)
    guessed = "/confirm/" + Tokens(SECRET).dumps("confirm", {"s": sub.pref_token, "n": "x"})
    async with client_for(web_app(tmp_path, sqlite_url)) as client:
        token = await csrf(client)
        assert (await client.get(bare)).status_code == 400
        assert (await client.post(guessed, data={"csrf_token": token})).status_code == 410
    assert _sub(sqlite_url, "n@example.org").status == "pending"


async def test_ipv6_clients_limited_by_their_64(tmp_path: Path, sqlite_url: str) -> None:
    app = web_app(tmp_path, sqlite_url, web__subscribe_limit=2)
    codes = []
    for n in range(3):
        async with client_for(app, client=(f"2001:db8:1:2::{n + 1:x}", 4000)) as client:
            token = await csrf(client)
            page = await client.post("/subscribe", data=subscribe_form(token, f"s{n}@x.org"))
            codes.append(page.status_code)
    assert codes == [200, 200, 429]


async def test_plus_tags_share_a_quota(tmp_path: Path, sqlite_url: str) -> None:
    app = web_app(tmp_path, sqlite_url, web__subscribe_limit=2)
    codes = []
    for n in range(4):
        async with client_for(app, client=(f"198.51.100.{n}", 4000)) as client:
            token = await csrf(client)
            page = await client.post("/subscribe", data=subscribe_form(token, f"V+{n}@x.org"))
            codes.append(page.status_code)
    assert codes == [200, 200, 429, 429]


def test_full_limiter_refuses_new_keys_instead_of_forgetting() -> None:
    now = [0.0]
    limiter = RateLimiter(2, window=60, max_keys=4, clock=lambda: now[0])
    assert limiter.hit("victim") == 0 and limiter.hit("victim") == 0
    flood = [limiter.hit(f"k{n}") for n in range(50)]
    assert flood[:3] == [0, 0, 0] and all(w > 0 for w in flood[3:])
    assert limiter.hit("victim") > 0  # still counted
    assert len(limiter._hits) <= 4
    now[0] = 61  # the old keys go idle: room again
    assert limiter.hit("new") == 0


async def test_stranger_text_and_settings_not_applied(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink
) -> None:
    _add(sqlite_url, "left@example.org", status="unsubscribed")
    _add(sqlite_url, "gone@example.org", status="bounced")
    app = web_app(tmp_path, sqlite_url, smtp_sink)
    async with client_for(app) as client:
        token = await csrf(client)
        spam = "buy cheap pills at evil dot example"
        left = await client.post(
            "/subscribe", data=subscribe_form(token, "left@example.org", keywords=spam)
        )
        gone = await client.post(
            "/subscribe", data=subscribe_form(token, "gone@example.org", keywords=spam)
        )
    assert left.status_code == gone.status_code == 200
    assert left.text.replace("left@", "X@") == gone.text.replace("gone@", "X@")
    assert smtp_sink.recipients() == {"left@example.org": 1}  # nothing to the bounced one
    message = smtp_sink.received[0].message
    for part in ("plain", "html"):
        assert "pills" not in message.get_body((part,)).get_content()
    left_sub = _sub(sqlite_url, "left@example.org")
    assert left_sub.status == "pending" and left_sub.keywords == ["transformers"]
    gone_sub = _sub(sqlite_url, "gone@example.org")
    assert gone_sub.status == "bounced" and gone_sub.keywords == ["transformers"]


async def test_unsubscribe_page_mints_no_preferences_link(tmp_path: Path, sqlite_url: str) -> None:
    sub = _add(sqlite_url, "u@example.org")
    path = "/unsubscribe/" + Tokens(SECRET).dumps("unsubscribe", sub.pref_token)
    async with client_for(web_app(tmp_path, sqlite_url)) as client:
        before = await client.get(path)
        token = await csrf(client, path)
        after = await client.post(path, data={"csrf_token": token})
    for page in (before, after):
        assert page.status_code == 200 and "/preferences/" not in page.text
    assert 'href="/"' in after.text


def test_serve_keeps_token_paths_out_of_the_access_log(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    env = {"DIGESTBOT_SECRET_KEY": "s" * 32}
    new_store("web.db")
    result = runner.invoke(main, ["serve", "--db", "web.db", "--port", str(free_port())], env=env)
    assert result.exit_code == 0, result.output
    assert seen["access_log"] is False


async def test_subscribe_bookkeeping_runs_after_the_response(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _add(sqlite_url, "known@example.org")
    events: list[str] = []
    real = pages._subscribe

    def recording(*args: Any) -> Any:
        events.append("db")
        return real(*args)

    monkeypatch.setattr(pages, "_subscribe", recording)
    app = web_app(tmp_path, sqlite_url)

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        async def send_(message: Any) -> None:
            if message["type"] == "http.response.start" and scope["path"] == "/subscribe":
                events.append("response")
            await send(message)

        await app(scope, receive, send_)

    wrapped.state = app.state  # type: ignore[attr-defined]
    async with client_for(wrapped) as client:  # type: ignore[arg-type]
        token = await csrf(client)
        for email in ("known@example.org", "fresh@example.org"):
            await client.post("/subscribe", data=subscribe_form(token, email))
    assert events == ["response", "db", "response", "db"]


async def test_csrf_cookie_host_prefix_and_server_seeds_only(
    tmp_path: Path, sqlite_url: str
) -> None:
    app = web_app(tmp_path, sqlite_url, digest__site_url="https://papers.example.org")
    async with client_for(app) as client:
        page = await client.get("/")
        cookie = page.headers["set-cookie"]
        assert cookie.startswith("__Host-digestbot_csrf=")
        assert "Secure" in cookie and "Path=/" in cookie and "Domain" not in cookie
    plain = web_app(tmp_path, sqlite_url)
    async with client_for(plain) as client:
        # a seed planted by someone else (wrong shape) is ignored and replaced
        client.cookies.set("digestbot_csrf", "planted")
        planted = Tokens(SECRET).dumps("csrf", "planted")
        page = await client.post("/subscribe", data=subscribe_form(planted, "p@example.org"))
        assert page.status_code == 403
        fresh = await client.get("/")
        assert "digestbot_csrf=" in fresh.headers["set-cookie"]
        assert "planted" not in fresh.headers["set-cookie"]
