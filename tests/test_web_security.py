"""Attacks on the web front: CSRF, forged tokens, floods, script injection, huge forms."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest
from itsdangerous.encoding import base64_encode
from sqlalchemy import func, select
from starlette.requests import Request

from digestbot.config import ConfigError
from digestbot.store import Subscriber, open_store
from digestbot.store.subscribers import add_subscriber
from digestbot.tokens import Tokens
from digestbot.web import create_app
from digestbot.web.ratelimit import RateLimiter
from digestbot.web.security import client_address, parse_networks

from .conftest import make_config
from .test_web_support import SECRET, client_for, csrf, subscribe_form, web_app

pytestmark = pytest.mark.anyio

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def _count(db_url: str) -> int:
    store = open_store(db_url)
    try:
        with store.session() as s:
            return int(s.scalar(select(func.count()).select_from(Subscriber)) or 0)
    finally:
        store.dispose()


def _add(db_url: str, email: str, keywords: str = "transformers") -> Subscriber:
    store = open_store(db_url)
    try:
        with store.session() as s:
            return add_subscriber(s, email=email, keywords=keywords)
    finally:
        store.dispose()


async def test_csrf_missing_forged_or_from_another_browser(tmp_path: Path, sqlite_url: str) -> None:
    app = web_app(tmp_path, sqlite_url)
    async with client_for(app) as client:
        token = await csrf(client)
        no_token = await client.post("/subscribe", data=subscribe_form("", "a@example.org"))
        forged = await client.post("/subscribe", data=subscribe_form(token + "x", "a@example.org"))
        other = Tokens(SECRET).dumps("csrf", "some-other-cookie")
        foreign = await client.post("/subscribe", data=subscribe_form(other, "a@example.org"))
        wrong_purpose = Tokens(SECRET).dumps("confirm", client.cookies["digestbot_csrf"])
        purpose = await client.post("/subscribe", data=subscribe_form(wrong_purpose, "a@x.org"))
        client.cookies.clear()
        no_cookie = await client.post("/subscribe", data=subscribe_form(token, "a@example.org"))
    for page in (no_token, forged, foreign, purpose, no_cookie):
        assert page.status_code == 403
        assert "did not come from this site" in page.text
    assert _count(sqlite_url) == 0


async def test_every_form_needs_csrf(tmp_path: Path, sqlite_url: str) -> None:
    sub = _add(sqlite_url, "victim@example.org")
    tokens = Tokens(SECRET)
    paths = [
        "/unsubscribe/" + tokens.dumps("unsubscribe", sub.pref_token),
        "/preferences/" + tokens.dumps("preferences", sub.pref_token),
        "/feedback/" + tokens.dumps("feedback", {"s": sub.pref_token, "p": "x", "d": "more"}),
        "/confirm/" + tokens.dumps("confirm", sub.pref_token),
    ]
    async with client_for(web_app(tmp_path, sqlite_url)) as client:
        for path in paths:
            page = await client.post(path, data={"keywords": "hijacked", "action": "resubscribe"})
            assert page.status_code == 403, path
    store = open_store(sqlite_url)
    with store.session() as s:
        got = s.scalar(select(Subscriber))
        assert got is not None and got.status == "active" and got.keywords == ["transformers"]
    store.dispose()


async def test_token_for_another_subscriber_or_purpose(tmp_path: Path, sqlite_url: str) -> None:
    alice = _add(sqlite_url, "alice@example.org", "alpha")
    bob = _add(sqlite_url, "bob@example.org", "beta")
    tokens = Tokens(SECRET)
    alice_prefs = "/preferences/" + tokens.dumps("preferences", alice.pref_token)
    async with client_for(web_app(tmp_path, sqlite_url)) as client:
        page = await client.get(alice_prefs)
        assert "alice@example.org" in page.text and "bob@example.org" not in page.text
        # Bob's feed token is public-ish (it is in his feed reader): it is not a key
        as_feed = await client.get("/preferences/" + tokens.dumps("preferences", bob.feed_token))
        assert as_feed.status_code == 404
        # a valid unsubscribe token for Alice does not open preferences
        swapped = await client.get("/preferences/" + tokens.dumps("unsubscribe", alice.pref_token))
        assert swapped.status_code == 400
        # splicing Bob's pref token into Alice's signed token breaks the signature
        alice_token = tokens.dumps("preferences", alice.pref_token)
        bob_payload = base64_encode(json.dumps(bob.pref_token)).decode()
        forged = bob_payload + alice_token[alice_token.index(".") :]
        assert forged != alice_token
        assert (await client.get("/preferences/" + forged)).status_code == 400
        unsigned = await client.get(f"/unsubscribe/{bob.pref_token}")
        assert unsigned.status_code == 400
    # the token never carries the address
    assert "alice" not in tokens.dumps("preferences", alice.pref_token)


async def test_subscribe_flood_limited_per_client(tmp_path: Path, sqlite_url: str) -> None:
    app = web_app(tmp_path, sqlite_url, web__subscribe_limit=3)
    async with client_for(app) as client:
        token = await csrf(client)
        codes = []
        for n in range(6):
            page = await client.post("/subscribe", data=subscribe_form(token, f"n{n}@example.org"))
            codes.append(page.status_code)
    assert codes == [200, 200, 200, 429, 429, 429]
    assert "Too many subscribe requests" in page.text
    assert 3000 <= int(page.headers["retry-after"]) <= 3600
    assert _count(sqlite_url) == 3


async def test_subscribe_flood_limited_per_address(tmp_path: Path, sqlite_url: str) -> None:
    app = web_app(tmp_path, sqlite_url, web__subscribe_limit=2)
    codes = []
    for n in range(4):  # a different client each time, the same victim address
        async with client_for(app, client=(f"198.51.100.{n}", 4000)) as client:
            token = await csrf(client)
            page = await client.post("/subscribe", data=subscribe_form(token, "Victim@Example.org"))
            codes.append(page.status_code)
    assert codes == [200, 200, 429, 429]
    # the limit also caps the confirmation emails a stranger can make us send
    assert len(list((tmp_path / "eml").glob("*.eml"))) == 2


async def test_forwarded_for_trusted_only_from_proxies(tmp_path: Path, sqlite_url: str) -> None:
    untrusted = web_app(tmp_path, sqlite_url, web__subscribe_limit=2)
    codes = []
    async with client_for(untrusted, client=("203.0.113.9", 1)) as client:
        token = await csrf(client)
        for n in range(3):  # a spoofed header does not make a new client
            headers = {"X-Forwarded-For": f"192.0.2.{n}"}
            page = await client.post(
                "/subscribe", data=subscribe_form(token, f"s{n}@example.org"), headers=headers
            )
            codes.append(page.status_code)
    assert codes == [200, 200, 429]

    behind = web_app(tmp_path, sqlite_url, web__subscribe_limit=2, web__trusted_proxies="127.0.0.1")
    codes = []
    async with client_for(behind, client=("127.0.0.1", 1)) as client:
        token = await csrf(client)
        for n in range(3):  # the proxy says these are three readers
            headers = {"X-Forwarded-For": f"6.6.6.6, 192.0.2.{n}"}
            page = await client.post(
                "/subscribe", data=subscribe_form(token, f"p{n}@example.org"), headers=headers
            )
            codes.append(page.status_code)
    assert codes == [200, 200, 200]


def _request(peer: str, forwarded: str | None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return Request({"type": "http", "client": (peer, 1), "headers": headers})


def test_client_address_walks_forwarded_for_from_the_right() -> None:
    proxies = parse_networks(["127.0.0.1", "10.0.0.0/8"])
    assert client_address(_request("127.0.0.1", "1.2.3.4"), proxies) == "1.2.3.4"
    # the client wrote the left part; our proxies appended the right part
    assert client_address(_request("127.0.0.1", "6.6.6.6, 1.2.3.4, 10.0.0.5"), proxies) == (
        "1.2.3.4"
    )
    assert client_address(_request("5.5.5.5", "1.2.3.4"), proxies) == "5.5.5.5"
    assert client_address(_request("127.0.0.1", None), proxies) == "127.0.0.1"
    assert client_address(_request("127.0.0.1", "1.2.3.4"), []) == "127.0.0.1"
    with pytest.raises(ConfigError, match="not an IP address"):
        parse_networks(["localhost"])


def test_rate_limiter_window_and_memory_bound() -> None:
    now = [0.0]
    limiter = RateLimiter(2, window=60, max_keys=4, clock=lambda: now[0])
    assert [limiter.hit("a") for _ in range(3)] == [0, 0, 60]
    now[0] = 30
    assert limiter.hit("a") == 30
    now[0] = 61
    assert limiter.hit("a") == 0
    for key in "bcdefgh":
        limiter.hit(key)
    assert len(limiter._hits) <= 4


async def test_script_in_interests_is_escaped_everywhere(tmp_path: Path, sqlite_url: str) -> None:
    evil = '<script>alert("x")</script>, "><img src=x onerror=alert(1)>'
    app = web_app(tmp_path, sqlite_url)
    async with client_for(app) as client:
        token = await csrf(client)
        bad = await client.post(
            "/subscribe", data=subscribe_form(token, "<script>@x", keywords=evil)
        )
        form = subscribe_form(token, "x@example.org", keywords=evil)
        done = await client.post("/subscribe", data=form)
        store = app.state.site.store
        with store.session() as s:
            sub = s.scalar(select(Subscriber))
            assert sub is not None
            pref = sub.pref_token
        prefs = await client.get("/preferences/" + Tokens(SECRET).dumps("preferences", pref))
    for page in (bad, done, prefs):
        assert "<script>alert" not in page.text
        assert "<img src=x" not in page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in prefs.text
    assert "&lt;script&gt;@x" in bad.text
    raw = next((tmp_path / "eml").glob("*.eml")).read_bytes()
    html = message_from_bytes(raw, policy=policy.default).get_body(("html",)).get_content()
    assert "<script>alert" not in html and "<img src=x" not in html
    # the stranger-typed interests are not mailed at all, escaped or not
    assert "alert" not in html and "onerror" not in html


async def test_huge_form_rejected_before_it_is_read(tmp_path: Path, sqlite_url: str) -> None:
    app = web_app(tmp_path, sqlite_url)
    megabyte = "x" * (1024 * 1024)
    async with client_for(app) as client:
        token = await csrf(client)
        declared = await client.post(
            "/subscribe", data=subscribe_form(token, "big@example.org", keywords=megabyte)
        )
        sent = 0

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal sent
            yield f"csrf_token={token}&email=big%40example.org&keywords=".encode()
            for _ in range(64):
                sent += 16 * 1024
                yield b"y" * (16 * 1024)

        streamed = await client.post(
            "/subscribe",
            content=chunks(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert declared.status_code == 413 and streamed.status_code == 413
    assert "larger than this site accepts (64 KB at most)" in declared.text
    assert "Error 413" in streamed.text
    assert sent < 200 * 1024  # it stopped reading soon after the limit
    assert _count(sqlite_url) == 0


async def test_length_limits_on_every_field(tmp_path: Path, sqlite_url: str) -> None:
    sub = _add(sqlite_url, "len@example.org")
    prefs = "/preferences/" + Tokens(SECRET).dumps("preferences", sub.pref_token)
    app = web_app(tmp_path, sqlite_url)
    long_fields = {
        "email": "a" * 250 + "@example.org",
        "keywords": "k" * 2001,
        "frequency": "d" * 11,
        "weekday": "1" * 11,
        "send_hour": "1" * 5,
        "timezone": "Europe/" + "B" * 60,
        "formats": "e" * 11,
        "max_items": "1" * 5,
    }
    async with client_for(app) as client:
        token = await csrf(client)
        for name, value in long_fields.items():
            path = "/subscribe" if name == "email" else prefs
            form = {**subscribe_form(token, "ok@example.org"), "formats": "email", "max_items": "5"}
            form[name] = value
            page = await client.post(path, data=form)
            assert page.status_code == 422, name
            assert "characters long; at most" in page.text, name
            assert value not in page.text, name  # not echoed back
    assert _count(sqlite_url) == 1


async def test_security_headers_on_every_response(tmp_path: Path, sqlite_url: str) -> None:
    app = web_app(tmp_path, sqlite_url)
    async with client_for(app) as client:
        responses = [
            await client.get("/"),
            await client.get("/nope"),
            await client.get("/static/site.css"),
            await client.get("/healthz"),
            await client.post("/subscribe", data={}),
        ]
    for response in responses:
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
        assert "strict-transport-security" not in response.headers
    cookie = responses[0].headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie


async def test_https_site_gets_hsts_and_secure_cookies(tmp_path: Path, sqlite_url: str) -> None:
    app = web_app(tmp_path, sqlite_url, digest__site_url="https://papers.example.org")
    async with client_for(app) as client:
        page = await client.get("/")
    assert page.headers["strict-transport-security"] == "max-age=31536000"
    assert "Secure" in page.headers["set-cookie"]


async def test_server_errors_use_the_error_page(tmp_path: Path, sqlite_url: str) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    from digestbot.store import Store

    app = web_app(tmp_path, sqlite_url)
    site = app.state.site
    site.store.dispose()
    # a database that cannot be opened: health says so, pages fail politely
    engine = create_engine(f"sqlite:///{tmp_path}/no/such/dir/x.db")
    site.store = Store(str(engine.url), engine, sessionmaker(engine))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        health = await client.get("/healthz")
        page = await client.get("/")
    assert health.status_code == 503 and health.json()["status"] == "error"
    assert page.status_code == 500 and "Error 500" in page.text
    assert "ran into a problem" in page.text and "Traceback" not in page.text
    for response in (health, page):
        assert response.headers["x-content-type-options"] == "nosniff"


def test_missing_secret_refuses_to_start(tmp_path: Path, sqlite_url: str) -> None:
    with pytest.raises(ConfigError, match="signing secret"):
        create_app(make_config(tmp_path, sqlite_url, web__secret_key=""))
