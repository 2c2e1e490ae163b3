"""Bounded storage: no bytes for feed-only digests, bytes dropped once they cannot be sent,
and history past store.retention_days pruned by `db prune` and by every run."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

from digestbot.cli import main
from digestbot.deliver import outbox
from digestbot.deliver.outbox import Outcome
from digestbot.pipeline import run_once
from digestbot.store import Digest, DigestItem, Store, open_store
from digestbot.store.models import DigestMessage

from .conftest import make_config
from .pipeline_helpers import add, fill_inbox
from .test_deliver_support import seed_outbox

NOON = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=10)


def _count(store: Store, model: type) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def _seed_and_send(store: Store, queued: int, *, sent: int) -> None:
    """``queued`` digests in the outbox, the first ``sent`` of them recorded as sent."""
    seed_outbox(store, queued)
    jobs = outbox.claim(store, "w", sent, NOW_CLAIM, LEASE)
    outbox.record(
        store, [(j, Outcome("sent")) for j in jobs], NOW_CLAIM, max_attempts=5, backoff_seconds=1
    )


def test_a_run_keeps_no_message_bytes_once_sent_nor_for_feeds(tmp_path: Path, db_url: str) -> None:
    config = make_config(tmp_path, db_url)
    store = open_store(db_url)
    try:
        fill_inbox(config.path("ingest.inbox"))
        add(store, "mail@example.org", send_hour=0, keywords=["diffusion"])
        add(store, "feed@example.org", send_hour=0, keywords=["diffusion"], formats="rss")
        report = run_once(store, config, now=NOON)
        assert (report.sent, report.feed_only) == (1, 1), report.as_dict()
        assert _count(store, DigestMessage) == 0
        with store.session() as s:
            states = dict(s.execute(select(Digest.recipient, Digest.state)).all())
            items = s.scalar(select(func.count()).select_from(DigestItem))
        assert states == {"mail@example.org": "sent", "feed@example.org": "feed_only"}
        assert items and items >= 2  # the history stays: each digest's papers
    finally:
        store.dispose()


def test_bytes_go_when_sent_or_bounced_and_stay_while_they_may_be_sent(store: Store) -> None:
    seed_outbox(store, 3)
    seed_outbox(store, 1, period="2026-11-23/daily", prefix="reader0x")  # kept queued
    jobs = outbox.claim(store, "w", 3, NOW_CLAIM, LEASE)
    sent, bounced, retried = jobs
    outbox.record(
        store,
        [
            (sent, Outcome("sent")),
            (bounced, Outcome("bounced", "550 5.1.1 no such user")),
            (retried, Outcome("retry", "451 later")),
        ],
        NOW_CLAIM,
        max_attempts=5,
        backoff_seconds=60,
    )
    with store.session() as s:
        kept = set(s.scalars(select(DigestMessage.digest_id)))
        papers = s.scalar(
            select(func.count()).select_from(DigestItem).where(DigestItem.digest_id == sent.id)
        )
    assert sent.id not in kept and bounced.id not in kept
    assert retried.id in kept and len(kept) == 2  # the retry and the other queued digest
    assert papers == 3  # the sent digest keeps its papers: what it showed its reader


NOW_CLAIM = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def test_db_prune_removes_finished_history_past_the_age(
    runner: CliRunner, tmp_path: Path, db_url: str
) -> None:
    store = open_store(db_url)
    try:
        _seed_and_send(store, 4, sent=3)
        with store.session() as s:
            old = datetime(2026, 6, 1, tzinfo=UTC)
            # two sent digests and the queued one are old; one sent digest is recent
            ids = sorted(s.scalars(select(Digest.id)))
            s.execute(update(Digest).where(Digest.id.in_(ids[:2] + ids[3:])).values(created_at=old))
        result = runner.invoke(
            main,
            [
                "db",
                "prune",
                "--db",
                db_url,
                "--older-than",
                "90d",
                "--json",
                "--now",
                "2026-11-22T12:00Z",
            ],
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.output) == {"digests": 2, "used_tokens": 0}
        with store.session() as s:
            left = dict(s.execute(select(Digest.id, Digest.state)).all())
        # the queued digest stays, however old: it has not been sent yet
        assert left == {ids[2]: "sent", ids[3]: "queued"}
        assert _count(store, DigestItem) == 6
        bad = runner.invoke(main, ["db", "prune", "--db", db_url, "--older-than", "soon"])
        assert bad.exit_code == 2 and "90d" in bad.output
    finally:
        store.dispose()


def test_a_run_prunes_past_store_retention_days(tmp_path: Path) -> None:
    db = str(tmp_path / "r.db")
    config = make_config(tmp_path, db, store__retention_days=30)
    store = open_store(db)
    try:
        _seed_and_send(store, 2, sent=2)
        with store.session() as s:
            s.execute(update(Digest).values(created_at=NOON - timedelta(days=31)))
        report = run_once(store, config, now=NOON, ingest=False)
        assert report.pruned == 2 and "prune" in report.timings
        assert _count(store, Digest) == 0 and _count(store, DigestItem) == 0
    finally:
        store.dispose()


def _analyzed(store: Store) -> set[str]:
    from sqlalchemy import text

    with store.engine.connect() as conn:
        return set(
            conn.execute(
                text(
                    "SELECT relname FROM pg_stat_user_tables WHERE schemaname = "
                    "current_schema() AND last_analyze IS NOT NULL"
                )
            ).scalars()
        )


def test_a_run_refreshes_postgresql_statistics_after_its_bulk_writes(
    tmp_path: Path, pg_url: str
) -> None:
    """Without autovacuum nothing else runs ANALYZE: the planner would scan all of
    digest_items for every group of results recorded."""
    config = make_config(tmp_path, pg_url)
    store = open_store(pg_url)
    try:
        fill_inbox(config.path("ingest.inbox"))
        add(store, "mail@example.org", send_hour=0, keywords=["diffusion"])
        report = run_once(store, config, now=NOON)
        assert report.sent == 1
        analyzed = _analyzed(store)
        # subscribers too: the digest stage wrote every due reader's row, and each claim
        # joins them (with stale counts a claim walked every reader's digests)
        assert {"papers", "digests", "digest_items", "subscribers"} <= analyzed
    finally:
        store.dispose()


def test_an_import_refreshes_postgresql_statistics_of_subscribers(
    runner: CliRunner, tmp_path: Path, pg_url: str
) -> None:
    csv = tmp_path / "subs.csv"
    csv.write_text("email,keywords\n" + "".join(f"r{i}@example.org,diffusion\n" for i in range(50)))
    store = open_store(pg_url)
    try:
        assert "subscribers" not in _analyzed(store)
        result = runner.invoke(main, ["subscribers", "import", "--db", pg_url, str(csv)])
        assert result.exit_code == 0, result.output
        assert "Imported 50 subscribers" in result.output
        assert "subscribers" in _analyzed(store)
    finally:
        store.dispose()


def test_postgresql_reuses_the_space_of_sent_messages_without_autovacuum(
    tmp_path: Path, pg_url: str
) -> None:
    """A server without autovacuum (as the issue's, and this one): each send's dead rows
    (every digest updated, every message's bytes deleted) must be vacuumed by digestbot, or
    the store grows by every message ever sent."""
    from sqlalchemy import text

    from digestbot.deliver import send_due

    store = open_store(pg_url)
    try:
        with store.engine.begin() as conn:  # whatever the server's setting
            conn.execute(
                text(
                    "ALTER TABLE digest_messages SET (autovacuum_enabled = false,"
                    " toast.autovacuum_enabled = false)"
                )
            )
        config = make_config(tmp_path, pg_url)
        sizes = []
        for day in range(4):
            # a day's digests, 40 KB each, sent and their bytes dropped
            seed_outbox(
                store, 300, size=40_000, period=f"2026-11-{20 + day}/daily", prefix=f"d{day}r"
            )
            report = send_due(store, config)
            assert report.sent == 300
            with store.engine.connect() as conn:
                sizes.append(
                    conn.execute(
                        text("SELECT pg_total_relation_size('digest_messages')")
                    ).scalar_one()
                )
        # the first day's space is reused by the next days: flat, not four days' worth
        assert sizes[-1] <= sizes[0] * 1.5, sizes
    finally:
        store.dispose()


def test_housekeeping_that_fails_is_a_warning_not_a_lost_send(
    tmp_path: Path, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A send's closing VACUUM failing (here: a table the server does not have; in life, a
    server gone or a lock) is logged, and the send's report stands."""
    store = open_store(pg_url)
    try:
        with caplog.at_level("WARNING", logger="digestbot"):
            assert store.analyze("no_such_table", vacuum=True) is False
            assert store.analyze("no_such_table") is False
        assert "VACUUM (ANALYZE)" in caplog.text and "the next run tries again" in caplog.text
        assert store.analyze("digests", vacuum=True) is True
    finally:
        store.dispose()
