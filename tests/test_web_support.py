"""Helpers for the web tests: an app per test, an in-process httpx client, CSRF tokens,
papers in the store, links read out of the emails the real SMTP sink received."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from starlette.applications import Starlette

from digestbot.store import Paper, Store, Subscriber, open_store
from digestbot.store.subscribers import add_subscriber
from digestbot.web import create_app

from .conftest import PUBLIC_MAIL, make_config
from .smtp_sink import SmtpSink

# not a placeholder: the web front mails over SMTP, which refuses one
SECRET = PUBLIC_MAIL["web__secret_key"]
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
LINK = re.compile(r"http://testserver(/[a-z]+/[A-Za-z0-9_.\-]+)")


def web_app(tmp_path: Path, db: str, sink: SmtpSink | None = None, **overrides: Any) -> Starlette:
    mail: dict[str, Any] = (
        {
            "delivery__transport": "smtp",
            "smtp__host": sink.host,
            "smtp__port": sink.port,
            "digest__from_address": PUBLIC_MAIL["digest__from_address"],
        }
        if sink is not None
        else {"delivery__transport": "file"}
    )
    settings = {
        "digest__site_url": "http://testserver",
        "web__secret_key": SECRET,
        **mail,
        **overrides,
    }
    # the app never migrates: like `digestbot db upgrade` before `serve`
    open_store(db, create=True).dispose()
    return create_app(make_config(tmp_path, db, **settings))


@asynccontextmanager
async def client_for(
    app: Starlette, client: tuple[str, int] = ("203.0.113.7", 50000)
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=client)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c
    finally:
        app.state.site.store.dispose()


async def csrf(client: httpx.AsyncClient, path: str = "/") -> str:
    page = await client.get(path)
    match = CSRF.search(page.text)
    assert match, f"no CSRF token on {path} ({page.status_code})"
    return match.group(1)


def subscribe_form(token: str, email: str, **fields: str) -> dict[str, str]:
    form = {
        "csrf_token": token,
        "email": email,
        "keywords": "diffusion models, speech recognition",
        "frequency": "daily",
        "weekday": "0",
        "send_hour": "8",
        "timezone": "Europe/Berlin",
    }
    form.update(fields)
    return form


def links_in(sink: SmtpSink, index: int = -1) -> list[str]:
    """Paths of the site links in the text part of a received email."""
    message = sink.received[index].message
    body = message.get_body(("plain",))
    assert body is not None
    return LINK.findall(body.get_content())


def add_papers(store: Store) -> None:
    old, new = date(2026, 3, 2), date(2026, 3, 3)
    rows = [
        ("2603.00001", "Old but loved", old, 500),
        ("2603.00002", "Sparse Autoencoders at Scale", new, 40),
        ("2603.00003", "Diffusion Models for Speech", new, 120),
        ("2603.00004", "A Quiet Paper", new, None),
        ("2603.00005", "Agents That <b>Plan</b>", new, 75),
    ]
    with store.session() as s:
        for arxiv, title, day, votes in rows:
            s.add(
                Paper(
                    id=arxiv,
                    arxiv_id=arxiv,
                    title_key=title.lower(),
                    title=title,
                    abstract=f"We study {title.lower()} in depth. " * 3,
                    authors=["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra"],
                    author_count=4,
                    listed_on=day,
                    upvotes=votes,
                    links=[],
                )
            )


def stored_subscriber(db: str, email: str) -> Subscriber | None:
    """The subscriber as the store holds it now, read through a connection of its own."""
    store = open_store(db)
    try:
        with store.session() as s:
            return s.scalar(select(Subscriber).where(Subscriber.email_key == email.lower()))
    finally:
        store.dispose()


def add_reader(db: str, email: str, **fields: Any) -> Subscriber:
    """An active subscriber (interested in transformers unless told otherwise)."""
    store = open_store(db)
    try:
        with store.session() as s:
            return add_subscriber(s, email=email, **{"keywords": "transformers", **fields})
    finally:
        store.dispose()
