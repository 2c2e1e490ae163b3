"""What an operator meets at the command line: stores that are refused rather than made,
exit codes as documented, and output that says what it means."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text

from digestbot.cli import main
from digestbot.errors import StoreError
from digestbot.store import open_store
from digestbot.store.db import head_revision
from digestbot.web import create_app

from .conftest import make_config, new_store

SECRET = {"DIGESTBOT_SECRET_KEY": "s" * 32}


@pytest.mark.parametrize(
    "command",
    [
        ["subscribers", "list"],
        ["subscribers", "show", "1"],
        ["db", "status"],
        ["papers"],
        ["outbox"],
        ["ingest", "seeds"],
        ["subscribers", "add", "ada@example.org", "-k", "x"],
    ],
)
def test_a_mistyped_sqlite_path_is_refused_not_created(
    runner: CliRunner, tmp_path: Path, command: list[str]
) -> None:
    result = runner.invoke(main, [*command, "--db", "typo.db"])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"Error: store.db: no store at {tmp_path / 'typo.db'}"
    assert lines[1].startswith("Hint: Check the path given with --db or DIGESTBOT_DB")
    assert "digestbot db upgrade --db" in lines[1]
    assert not (tmp_path / "typo.db").exists()


def test_an_empty_postgresql_database_gains_no_tables(runner: CliRunner, pg_url: str) -> None:
    result = runner.invoke(main, ["subscribers", "list", "--db", pg_url])
    assert result.exit_code == 1
    assert "is not a digestbot store (it has no digestbot schema)" in result.output
    assert "Hint: Check --db or DIGESTBOT_DB; to make a new store there, run" in result.output
    engine = create_engine(pg_url)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
    # the commands that may create a schema do
    made = runner.invoke(main, ["db", "upgrade", "--db", pg_url])
    assert made.exit_code == 0 and made.output.startswith("Upgraded schema from empty to ")
    listed = runner.invoke(main, ["subscribers", "list", "--db", pg_url])
    assert (listed.exit_code, listed.output) == (0, "No subscribers.\n")


def test_run_and_db_upgrade_create_a_new_sqlite_store(runner: CliRunner, tmp_path: Path) -> None:
    made = runner.invoke(main, ["db", "upgrade", "--db", "a.db"])
    assert made.exit_code == 0 and (tmp_path / "a.db").is_file()
    ran = runner.invoke(main, ["run", "--db", "b.db", "--no-send"])
    assert ran.exit_code == 4, ran.output
    assert (tmp_path / "b.db").is_file()


def _age(db: str) -> str:
    """Make the store look migrated by an older digestbot; the head it needs."""
    store = open_store(db)
    head = head_revision(store)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0000_older'"))
    store.dispose()
    assert head is not None
    return head


def test_web_app_refuses_an_old_schema_and_never_migrates(tmp_path: Path) -> None:
    db = new_store(tmp_path / "web.db")
    head = _age(db)
    config = make_config(tmp_path, db)
    with pytest.raises(StoreError) as caught:
        create_app(config)
    assert f"has schema revision 0000_older; this digestbot needs {head}" in str(caught.value)
    assert "digestbot db upgrade" in (caught.value.hint or "")
    with pytest.raises(StoreError, match="no store at"):
        create_app(make_config(tmp_path, str(tmp_path / "missing.db")))
    assert not (tmp_path / "missing.db").exists()


def test_serve_on_an_old_schema_says_to_upgrade(runner: CliRunner, tmp_path: Path) -> None:
    head = _age(new_store(tmp_path / "web.db"))
    result = runner.invoke(main, ["serve", "--db", "web.db"], env=SECRET)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith("Error: store.db: sqlite:///")
    assert lines[0].endswith(f"has schema revision 0000_older; this digestbot needs {head}")
    assert lines[1].startswith("Hint: Run `digestbot db upgrade` once")
