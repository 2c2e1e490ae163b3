"""One reader's failure is theirs alone: a digest that fails to render or to queue, or a
feed that fails to build, is logged with its traceback, recorded against that reader,
and the run goes on for everyone else."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import digestbot.render
import digestbot.render.feeds
from digestbot.config import Config
from digestbot.pipeline import run_once
from digestbot.store import Digest, Store, Subscriber, open_store

from .conftest import make_config
from .pipeline_helpers import add, fill_inbox, maildir_recipients

NOON = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
VICTIM = "victim@example.org"


def _setup(tmp_path: Path, formats: str = "email") -> tuple[Store, Config]:
    db = str(tmp_path / "i.db")
    config = make_config(tmp_path, db)
    store = open_store(db)
    fill_inbox(config.path("ingest.inbox"))
    for name in ("a", "victim", "b"):
        add(store, f"{name}@example.org", send_hour=0, keywords=["diffusion"], formats=formats)
    return store, config


def _id(store: Store, email: str) -> int:
    with store.session() as s:
        return int(s.scalar(select(Subscriber.id).where(Subscriber.email == email)) or 0)


def _tracebacks(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage() and r.exc_info is not None]


def test_a_digest_failing_to_render_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = digestbot.render.render_digest

    def render(sub: Subscriber, *args: Any, **kwargs: Any) -> Any:
        if sub.email == VICTIM:
            raise ZeroDivisionError("a bug in one reader's digest")
        return real(sub, *args, **kwargs)

    monkeypatch.setattr(digestbot.render, "render_digest", render)
    store, config = _setup(tmp_path)
    try:
        report = run_once(store, config, now=NOON)
        failed = [(o.subscriber_id, o.error) for o in report.digests if o.state == "failed"]
        assert failed == [
            (_id(store, VICTIM), "render: ZeroDivisionError: a bug in one reader's digest")
        ]
        assert report.status == "partial" and report.sent == 2
        assert set(maildir_recipients(config.path("delivery.maildir"))) == {
            "a@example.org",
            "b@example.org",
        }
        assert _tracebacks(caplog, f"subscriber {_id(store, VICTIM)} failed")
    finally:
        store.dispose()


def test_a_digest_failing_to_queue_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = digestbot.render.render_digest

    def broken_bytes() -> bytes:
        raise RuntimeError("this message cannot be written")

    def render(sub: Subscriber, *args: Any, **kwargs: Any) -> Any:
        digest = real(sub, *args, **kwargs)
        if sub.email == VICTIM:
            digest.as_bytes = broken_bytes
        return digest

    monkeypatch.setattr(digestbot.render, "render_digest", render)
    store, config = _setup(tmp_path)
    try:
        report = run_once(store, config, now=NOON)
        victim = _id(store, VICTIM)
        failed = [(o.subscriber_id, o.error) for o in report.digests if o.state == "failed"]
        assert failed == [(victim, "queue: RuntimeError: this message cannot be written")]
        assert report.status == "partial" and report.sent == 2
        with store.session() as s:
            queued = set(s.scalars(select(Digest.subscriber_id)))
        assert victim not in queued and len(queued) == 2
        assert _tracebacks(caplog, f"subscriber {victim} failed")
    finally:
        store.dispose()


def test_a_feed_failing_to_build_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = digestbot.render.feeds.subscriber_feeds

    def feeds(sub: Subscriber, *args: Any, **kwargs: Any) -> Any:
        if sub.email == VICTIM:
            raise KeyError("a bug in one reader's feed")
        return real(sub, *args, **kwargs)

    store, config = _setup(tmp_path, formats="rss")
    with store.session() as s:
        token = s.scalar(select(Subscriber.feed_token).where(Subscriber.email == VICTIM))
    folder = config.path("digest.feeds_dir")
    folder.mkdir(parents=True)
    (folder / f"{token}.rss").write_bytes(b"<rss>yesterday's</rss>")
    monkeypatch.setattr(digestbot.render.feeds, "subscriber_feeds", feeds)
    try:
        report = run_once(store, config, now=NOON)
        victim = _id(store, VICTIM)
        assert report.feeds_failed == [(victim, 'KeyError: "a bug in one reader\'s feed"')]
        assert report.feeds == 2 and report.feed_only == 3 and report.status == "partial"
        written = {p.name for p in folder.iterdir()}
        assert len(written) == 2 * 3 + 1  # two readers' pairs, new.*, the victim's old rss
        assert (folder / f"{token}.rss").read_bytes() == b"<rss>yesterday's</rss>"
        assert _tracebacks(caplog, f"subscriber {victim} failed")
    finally:
        store.dispose()
