from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text

from digestbot.errors import LockError, StoreError
from digestbot.store import Base, Paper, RunLock, Store, open_store
from digestbot.store.db import SCHEMA_HEAD, current_revision, head_revision, normalise_url


def test_migrations_create_the_models_schema(store: Store) -> None:
    assert current_revision(store) == head_revision(store)
    # what commands check the store against without alembic (a new migration moves it)
    assert SCHEMA_HEAD == head_revision(store)
    with store.engine.connect() as conn:
        # read by alembic's own means too: the same answer
        assert MigrationContext.configure(conn).get_current_revision() == SCHEMA_HEAD
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], "models.py and the migrations disagree; add a migration"


def test_reopening_is_idempotent(db_url: str) -> None:
    for _ in range(2):
        s = open_store(db_url)
        assert current_revision(s) == head_revision(s)
        s.dispose()


def test_sqlite_uses_wal_and_foreign_keys(sqlite_store: Store) -> None:
    with sqlite_store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        # freed pages (a sent message's bytes) are not zeroed with extra writes (2: FAST)
        assert conn.execute(text("PRAGMA secure_delete")).scalar() == 2


def test_new_sqlite_files_get_16k_pages_and_old_ones_keep_theirs(tmp_path: Path) -> None:
    fresh = open_store(tmp_path / "new.db")
    with fresh.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA page_size").scalar() == 16384
    fresh.dispose()
    # a store created with SQLite's default pages (an older digestbot) opens and works as is
    old_path = tmp_path / "old.db"
    legacy = sqlite3.connect(old_path)
    legacy.execute("PRAGMA page_size=4096")
    legacy.execute("VACUUM")  # writes the header, fixing the page size
    legacy.close()
    old = open_store(old_path)
    with old.session() as s:
        s.add(Paper(id="p1", title_key="k1", title="A paper"))
    with old.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA page_size").scalar() == 4096
        assert conn.exec_driver_sql("SELECT count(*) FROM papers").scalar() == 1
    old.dispose()


def test_datetimes_come_back_aware_in_utc(store: Store) -> None:
    when = datetime(2026, 11, 22, 8, 30, tzinfo=UTC)
    with store.session() as s:
        s.add(Paper(id="2410.05434", title="T", title_key="k", first_seen_at=when))
    with store.session() as s:
        paper = s.get(Paper, "2410.05434")
        assert paper is not None and paper.first_seen_at == when
        assert paper.first_seen_at.tzinfo is not None


def test_a_failed_transaction_leaves_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.session() as s:
        s.add(Paper(id="x1", title="T", title_key="k"))
        s.flush()
        raise RuntimeError("boom")
    with store.session() as s:
        assert s.get(Paper, "x1") is None


def test_bulk_rows_keep_every_character_and_null(store: Store) -> None:
    """insert_many (SQLite: many-row INSERTs; PostgreSQL: COPY, whose text format has its
    own escapes) stores what a hostile dump carries exactly: tabs, line ends, backslashes,
    a literal \\N (COPY's NULL), quotes, emoji; and NULLs as NULLs."""
    from sqlalchemy import Table

    from digestbot.store.bulk import insert_many

    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    nasty = "tab\there, line\nend\r\n, back\\slash, \\N, \"quoted\" 'it', emoji \U0001f9e0"
    names = ["id", "title_key", "title", "abstract", "authors", "organization", "links"]
    rows = [
        ("p1", "k1", nasty, "\\N", ["A\\B", 'C "D"\tE'], None, []),
        ("p2", "k2", "plain", "", None, "\\N", ["https://example.org/a\tb"]),
    ]
    with store.engine.begin() as conn:
        table = Paper.__table__
        assert isinstance(table, Table)
        insert_many(conn, table, [*names, "first_seen_at", "updated_at"], rows, when, when)
    with store.session() as s:
        got = {p.id: p for p in s.scalars(select(Paper))}
        for row in rows:
            paper = got[row[0]]
            assert tuple(getattr(paper, n) for n in names) == row
            assert paper.first_seen_at == when


def test_file_paths_become_sqlite_urls(tmp_path: Path) -> None:
    assert normalise_url(tmp_path / "a.db") == f"sqlite:///{tmp_path / 'a.db'}"
    assert normalise_url("postgresql://h/db") == "postgresql+psycopg://h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as info:
        open_store(tmp_path / "nope" / "x.db")
    assert "does not exist" in str(info.value) and info.value.hint


def test_run_lock_admits_one_run_at_a_time(store: Store) -> None:
    with RunLock(store):
        with pytest.raises(LockError):
            RunLock(store).acquire()
    with RunLock(store):  # released: the next run gets it
        pass


def _in_main_file(path: Path) -> int:
    """Papers in the database file itself: ``immutable`` makes SQLite ignore the WAL."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM papers").fetchone()[0]
    finally:
        conn.close()


def _add_papers(conn: Any, n: int, start: int = 0) -> None:
    conn.execute(
        Paper.__table__.insert(),
        [
            {"id": f"p{i}", "title_key": f"k{i}", "title": f"Paper {i}", "abstract": "x" * 2000}
            for i in range(start, start + n)
        ],
    )


def test_sqlite_checkpoints_on_its_own_with_no_thread(sqlite_store: Store) -> None:
    """No background checkpoint thread: SQLite's automatic checkpoint copies a big
    transaction's WAL into the file at its commit."""
    path = sqlite_store.sqlite_path
    assert path is not None
    threads = threading.active_count()
    with sqlite_store.engine.begin() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
        # ~20 MB: past the 1,000 pages (of 16 KB) of the automatic checkpoint
        _add_papers(conn, 10_000)
    assert threading.active_count() == threads
    assert _in_main_file(path) == 10_000


def test_a_run_killed_after_a_commit_loses_nothing(tmp_path: Path) -> None:
    """A committed dump survives SIGKILL of the process that wrote it."""
    path = tmp_path / "killed.db"
    script = f"""
import os, signal
from digestbot.store import Paper, open_store
store = open_store({str(path)!r})
with store.engine.begin() as conn:
    conn.execute(Paper.__table__.insert(), [
        {{"id": f"p{{i}}", "title_key": f"k{{i}}", "title": "T", "abstract": "x" * 2000}}
        for i in range(3000)
    ])
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    store = open_store(path)
    with store.session() as s:
        assert s.scalar(text("SELECT count(*) FROM papers")) == 3000
    store.dispose()
    assert _in_main_file(path) == 3000  # and closing the store copied it into the file


def test_a_postgresql_host_that_never_answers_fails_within_the_connect_timeout() -> None:
    """A port that accepts TCP and says nothing (a firewall, a hung server)."""
    import socket
    import time

    from digestbot.errors import StoreError
    from digestbot.store.db import PG_CONNECT_TIMEOUT

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    started = time.monotonic()
    try:
        with pytest.raises(StoreError) as info:
            open_store(f"postgresql+psycopg://postgres@127.0.0.1:{port}/test")
    finally:
        listener.close()
    took = time.monotonic() - started
    assert took < PG_CONNECT_TIMEOUT * 2 + 5, f"took {took:.0f} s"
    assert f"127.0.0.1:{port}" in str(info.value) or "timeout" in str(info.value).lower()


def test_a_locked_sqlite_store_is_an_error_with_a_hint(tmp_path: Path) -> None:
    """What the CLI prints when another process holds SQLite's write lock."""
    import sqlite3

    from click.testing import CliRunner
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    from digestbot.cli import main
    from digestbot.store.db import store_error_from

    db = tmp_path / "d.db"
    open_store(str(db)).dispose()
    holder = sqlite3.connect(db)
    holder.execute("BEGIN IMMEDIATE")  # the write lock, as a long import holds it
    try:
        impatient = create_engine(f"sqlite:///{db}", connect_args={"timeout": 0.1})
        with pytest.raises(OperationalError) as info, impatient.begin() as conn:
            conn.execute(text("UPDATE papers SET title = title"))
        impatient.dispose()
        error = store_error_from(info.value)
        assert error.message == "the store failed: database is locked"
        assert error.field == "store.db"
        assert error.hint is not None and "write lock" in error.hint
        result = CliRunner().invoke(main, ["subscribers", "list", "--db", str(db)])
        assert result.exit_code == 0  # readers are not blocked by a writer (WAL)
    finally:
        holder.rollback()
        holder.close()


def test_downgrading_past_0007_rebuilds_sent_papers_from_sent_digests(store: Store) -> None:
    """0007 drops sent_papers (a sent digest's items say what its reader got); going back
    rebuilds it from them: the papers of sent digests, not of queued ones."""
    from alembic import command

    from digestbot.store import Digest, DigestItem
    from digestbot.store.db import _alembic_config, upgrade

    from .test_deliver_support import add_subscribers

    (sub,) = add_subscribers(store, 1)
    with store.engine.begin() as conn:
        _add_papers(conn, 3)
    with store.session() as s:
        ids = [p for p in s.scalars(select(Paper.id).order_by(Paper.id))]
        for state, papers in (("sent", ids[:2]), ("queued", ids[2:])):
            d = Digest(
                subscriber_id=sub,
                period=f"{state}/daily",
                state=state,
                message_id=f"<{state}@x>",
                recipient="r@example.org",
            )
            d.items.extend(DigestItem(paper_id=p, rank=i, score=0.5) for i, p in enumerate(papers))
            s.add(d)
    command.downgrade(_alembic_config(store), "0006_embeddings")
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT subscriber_id, paper_id FROM sent_papers")).all()
    assert sorted(rows) == [(sub, ids[0]), (sub, ids[1])]
    upgrade(store)
    assert current_revision(store) == SCHEMA_HEAD
    with store.engine.connect() as conn:
        assert not inspect(conn).has_table("sent_papers")
