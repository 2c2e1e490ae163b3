from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from digestbot.errors import LockError, StoreError
from digestbot.store import Base, Paper, RunLock, Store, open_store
from digestbot.store.db import current_revision, head_revision, normalise_url


def test_migrations_create_the_models_schema(store: Store) -> None:
    assert current_revision(store) == head_revision(store)
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
