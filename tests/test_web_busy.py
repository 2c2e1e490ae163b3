"""The web front with the store's write lock held elsewhere (a 100k-row import holds it for
a minute and a half): the reader is told to try again, never that it was done."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from digestbot.store import Subscriber, open_store
from digestbot.tokens import Tokens

from .smtp_sink import SmtpSink
from .test_web_support import SECRET, add_reader, client_for, csrf, subscribe_form, web_app

pytestmark = pytest.mark.anyio


@contextmanager
def write_lock(db: str) -> Iterator[None]:
    """SQLite's write lock, held the way a long transaction in another process holds it."""
    holder = sqlite3.connect(db)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.rollback()
        holder.close()


def _count(db: str) -> int:
    store = open_store(db, create=False)
    try:
        with store.session() as s:
            return s.query(Subscriber).count()
    finally:
        store.dispose()


async def test_subscribe_while_the_store_is_locked_says_busy_and_records_nothing(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink
) -> None:
    app = web_app(tmp_path, sqlite_url, smtp_sink)
    async with client_for(app) as client:
        token = await csrf(client)
        with write_lock(sqlite_url):
            busy = await client.post("/subscribe", data=subscribe_form(token, "ada@example.org"))
        assert busy.status_code == 503
        assert busy.headers["Retry-After"] == "60"
        assert "Nothing was changed" in busy.text and "Check your inbox" not in busy.text
        assert _count(sqlite_url) == 0 and smtp_sink.received == []
        # once the lock is gone the same request goes through
        done = await client.post("/subscribe", data=subscribe_form(token, "ada@example.org"))
        assert done.status_code == 200 and "Check your inbox" in done.text
        assert _count(sqlite_url) == 1


async def test_one_click_unsubscribe_while_locked_is_503_then_applied(
    tmp_path: Path, sqlite_url: str
) -> None:
    sub = add_reader(sqlite_url, "u@example.org")
    path = "/unsubscribe/" + Tokens(SECRET).dumps("unsubscribe", sub.pref_token)
    app = web_app(tmp_path, sqlite_url)
    one_click = {"List-Unsubscribe": "One-Click"}
    async with client_for(app) as client:
        with write_lock(sqlite_url):
            busy = await client.post(path, data=one_click)
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "60"
        store = open_store(sqlite_url, create=False)
        with store.session() as s:
            assert s.get(Subscriber, sub.id).status == "active"  # type: ignore[union-attr]
        store.dispose()
        done = await client.post(path, data=one_click)
        assert done.status_code == 200
        store = open_store(sqlite_url, create=False)
        with store.session() as s:
            assert s.get(Subscriber, sub.id).status == "unsubscribed"  # type: ignore[union-attr]
        store.dispose()
