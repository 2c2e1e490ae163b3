"""What an operator meets at the command line: stores that are refused rather than made,
exit codes as documented, and output that says what it means."""

from __future__ import annotations

import json
import shlex
import socket
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, select, text

from digestbot.cli import main
from digestbot.errors import StoreError
from digestbot.store import Subscriber, open_store
from digestbot.store.db import head_revision
from digestbot.web import create_app

from .conftest import SEEDS, make_config, new_store
from .pipeline_helpers import add, fill_inbox, maildir_recipients

SECRET = {"DIGESTBOT_SECRET_KEY": "s" * 32}


@pytest.mark.parametrize(
    "command",
    [
        ["subscribers", "list"],
        ["subscribers", "show", "1"],
        ["db", "status"],
        ["papers"],
        ["outbox"],
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


def test_ingest_starts_a_new_store_with_its_first_papers(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["ingest", str(SEEDS), "--db", "new.db", "--json"])
    assert result.exit_code == 0, result.output
    assert '"papers_new": 255' in result.output
    assert (tmp_path / "new.db").is_file()


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


NOW = ["--now", "2026-11-22T12:00:00+00:00"]


def _reader(db: str, email: str = "ada@example.org", **fields: object) -> int:
    store = open_store(db)
    try:
        return add(store, email, **{"send_hour": 0, **fields})
    finally:
        store.dispose()


def test_run_keeps_its_default_folders_beside_the_store(runner: CliRunner, tmp_path: Path) -> None:
    home = tmp_path / "srv"
    home.mkdir()
    db = new_store(home / "digestbot.db")
    fill_inbox(home / "inbox", 1)
    _reader(db)
    result = runner.invoke(main, ["run", "--db", db, *NOW], env=SECRET)
    assert result.exit_code == 0, result.output
    assert "due:     1 subscriber  (" in result.output  # not "1 subscribers"
    assert maildir_recipients(home / "maildir") == {"ada@example.org": 1}
    assert (home / "inbox" / "processed").is_dir() and (home / "feeds").is_dir()
    # nothing in the working folder
    assert not {"inbox", "maildir", "feeds"} & {p.name for p in tmp_path.iterdir()}


def test_run_dash_q_is_the_same_as_digestbot_dash_q(runner: CliRunner, tmp_path: Path) -> None:
    db = new_store(tmp_path / "d.db")
    after = runner.invoke(main, ["run", "-q", "--db", db, *NOW], env=SECRET)
    before = runner.invoke(main, ["-q", "run", "--db", db, *NOW], env=SECRET)
    assert (after.exit_code, after.output) == (4, "") == (before.exit_code, before.output)


def test_remove_without_a_terminal_needs_yes(runner: CliRunner, tmp_path: Path) -> None:
    db = new_store(tmp_path / "s.db")
    _reader(db)
    said_no = runner.invoke(main, ["subscribers", "remove", "1", "--db", db], input="n\n")
    assert said_no.exit_code == 2
    assert (
        "Error: not deleting ada@example.org: there is no terminal to confirm on; "
        "pass --yes to delete without asking"
    ) in said_no.output
    assert runner.invoke(main, ["subscribers", "show", "1", "--db", db]).exit_code == 0
    done = runner.invoke(main, ["subscribers", "remove", "1", "--yes", "--db", db])
    assert (done.exit_code, done.output) == (0, "Removed subscriber ada@example.org\n")


def test_usage_errors_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    db = new_store(tmp_path / "s.db")
    rank = runner.invoke(main, ["rank", "--db", db])
    assert rank.exit_code == 2
    assert "Error: give --keywords or --liked to rank by, e.g. digestbot rank" in rank.output
    hour = runner.invoke(
        main, ["subscribers", "add", "a@example.org", "-k", "x", "--send-hour", "25", "--db", db]
    )
    assert hour.exit_code == 2
    assert "Invalid value for '--send-hour': 25 is not in the range 0<=x<=23" in hour.output
    update = runner.invoke(main, ["subscribers", "update", "1", "--send-hour", "-1", "--db", db])
    assert update.exit_code == 2


def test_serve_on_a_busy_port_is_an_error_with_a_hint(runner: CliRunner, tmp_path: Path) -> None:
    new_store(tmp_path / "web.db")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(main, ["serve", "--db", "web.db", "--port", str(port)], env=SECRET)
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"Error: web.port: cannot listen on 127.0.0.1:{port}: the address is already in use",
        "Hint: Another program (or another `digestbot serve`) listens there: stop it, or pick "
        "another port with --port or web.port.",
    ]


def test_preview_takes_an_id_address_or_token_and_needs_no_key(
    runner: CliRunner, tmp_path: Path
) -> None:
    db = new_store(tmp_path / "p.db")
    fill_inbox(tmp_path / "inbox", 2)
    assert runner.invoke(main, ["ingest", "--inbox", "--db", db]).exit_code == 0
    _reader(db)
    store = open_store(db)
    with store.session() as session:
        token = session.scalars(select(Subscriber.feed_token)).one()
    store.dispose()
    for who in ("1", "Ada@Example.org", token):
        result = runner.invoke(
            main, ["preview", "--subscriber", who, "--out", "out", "--db", db, *NOW]
        )
        assert result.exit_code == 0, result.output
        assert "Preview of ada@example.org's digest for 2026-11-22/daily" in result.output
        assert "signed with a throwaway key and will not work on the site" in result.output
    assert "digest.html" in {p.name for p in (tmp_path / "out").iterdir()}
    signed = runner.invoke(
        main, ["preview", "--subscriber", "1", "--out", "out", "--db", db, *NOW], env=SECRET
    )
    assert signed.exit_code == 0 and "throwaway" not in signed.output
    missing = runner.invoke(main, ["preview", "--subscriber", "7", "--db", db])
    assert missing.exit_code == 1 and "Error: subscriber: no subscriber '7'" in missing.output


def test_rank_json_scores_are_rounded(runner: CliRunner, tmp_path: Path) -> None:
    db = new_store(tmp_path / "r.db")
    assert runner.invoke(main, ["ingest", str(SEEDS), "--db", db]).exit_code == 0
    result = runner.invoke(main, ["rank", "-k", "diffusion, speech", "--json", "--db", db])
    picks = json.loads(result.output)
    assert picks and all(p["score"] == round(p["score"], 4) for p in picks)
    assert any(len(repr(p["score"]).split(".")[1]) > 2 for p in picks)


def test_list_shows_schedules_as_the_demo_does(runner: CliRunner, tmp_path: Path) -> None:
    db = new_store(tmp_path / "s.db")
    _reader(db, send_hour=7, timezone="Europe/Berlin")
    _reader(db, "kenji@example.org", frequency="weekly", weekday=4, timezone="Asia/Tokyo")
    result = runner.invoke(main, ["subscribers", "list", "--db", db])
    assert "daily 07:00" in result.output and "weekly Fri 00:00" in result.output
    assert result.output.endswith("2 subscribers\n")
    one = runner.invoke(main, ["subscribers", "list", "--status", "active", "--db", db])
    assert "1 subscribers" not in one.output


def test_the_demo_says_where_its_store_is_and_what_to_try_next(runner: CliRunner) -> None:
    result = runner.invoke(main, ["demo", *NOW])
    assert result.exit_code == 0, result.output
    demo = Path("demo").resolve()
    assert f"  Store:   {demo / 'digestbot.db'}  (SQLite)" in result.output
    assert (demo / "html" / "03-maria.html").is_file()
    feed_line = next(line for line in result.output.splitlines() if "Feed:" in line)
    assert "(Kenji's; all feeds in " in feed_line
    lines = result.output.splitlines()
    start = lines.index("Next, try (every command takes the demo's store with --db):")
    tries = [shlex.split(line)[1:] for line in lines[start + 1 : start + 4]]
    assert all(t[-2:] == ["--db", "demo/digestbot.db"] for t in tries) and len(tries) == 3
    for args in tries:
        tried = runner.invoke(main, [*args, *NOW])
        assert tried.exit_code == 0, (args, tried.output)
    assert not Path("digestbot.db").exists()  # nothing went to a store beside it


def _commands(group: click.Group, path: list[str]) -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, [*path, name])
        else:
            found.append((" ".join([*path, name]), command))
    return found


@pytest.mark.parametrize("name", [name for name, _ in _commands(main, [])])
def test_every_command_help_has_an_example(runner: CliRunner, name: str) -> None:
    result = runner.invoke(main, [*name.split(), "--help"])
    assert result.exit_code == 0
    example = result.output.split("Example:", 1)
    assert len(example) == 2, f"`digestbot {name} --help` shows no example"
    assert example[1].strip().startswith(f"digestbot {name.split()[0]}")


def test_a_new_reader_waits_for_their_next_send_hour(runner: CliRunner, tmp_path: Path) -> None:
    db = new_store(tmp_path / "n.db")
    fill_inbox(tmp_path / "inbox", 2)
    added = runner.invoke(
        main,
        ["subscribers", "add", "ada@example.org", "-k", "diffusion", "--send-hour", "8"]
        + ["--db", db, "--now", "2026-11-22T10:05:00Z"],
    )
    assert added.exit_code == 0, added.output
    # today's 08:00 had passed when Ada joined: two minutes later she is not due
    soon = runner.invoke(main, ["run", "--db", db, "--now", "2026-11-22T10:07:00Z"], env=SECRET)
    assert "due:     0 subscribers" in soon.output, soon.output
    assert maildir_recipients(tmp_path / "maildir") == {}
    early = runner.invoke(main, ["run", "--db", db, "--now", "2026-11-23T07:59:00Z"], env=SECRET)
    assert "due:     0 subscribers" in early.output
    # her first digest comes at her next send hour
    next_day = runner.invoke(main, ["run", "--db", db, "--now", "2026-11-23T08:00:00Z"], env=SECRET)
    assert next_day.exit_code == 0, next_day.output
    assert "due:     1 subscriber  (" in next_day.output
    assert maildir_recipients(tmp_path / "maildir") == {"ada@example.org": 1}


def test_import_update_changes_known_readers_and_a_rerun_changes_nothing(
    runner: CliRunner, tmp_path: Path
) -> None:
    db = new_store(tmp_path / "i.db")
    _reader(db, "ada@example.org", name="Ada")
    store = open_store(db)
    with store.session() as session:
        before = session.scalars(select(Subscriber)).one()
        tokens = (before.id, before.feed_token, before.pref_token)
    store.dispose()
    csv = (
        "email,name,keywords,send_hour,timezone\n"
        'ADA@example.org,Ada L.,"vision, speech",7,Europe/Berlin\n'
        "bob@example.org,Bob,retrieval,8,UTC\n"
        "carol@example.org,Carol,,9,Mars/Base\n"
    )
    plain = runner.invoke(main, ["subscribers", "import", "-", "--db", db], input=csv)
    assert plain.exit_code == 3
    assert "Error: <stdin>:2: email: ADA@example.org is already subscribed" in plain.output
    assert plain.output.endswith(
        "Imported 1 subscriber, 2 failed.\n"
        "Hint: 1 row names an address already subscribed: pass --update to update them "
        "instead.\n"
    )
    for _ in range(2):  # a rerun is harmless
        upd = runner.invoke(main, ["subscribers", "import", "-", "--update", "--db", db], input=csv)
        assert upd.exit_code == 3
        assert upd.output.endswith("Imported 0 subscribers, 2 updated, 1 failed.\n")
    store = open_store(db)
    with store.session() as session:
        ada = session.get(Subscriber, tokens[0])
        assert ada is not None
        assert (ada.id, ada.feed_token, ada.pref_token) == tokens
        assert (ada.name, ada.keywords, ada.send_hour, ada.timezone) == (
            "Ada L.",
            ["vision", "speech"],
            7,
            "Europe/Berlin",
        )
        assert len(session.scalars(select(Subscriber)).all()) == 2
    store.dispose()


def test_the_postgresql_run_lock_is_per_schema(pg_url: str) -> None:
    """Two stores in one database (schemas of their own) run independently; one store's
    runs still exclude each other."""
    from digestbot.errors import LockError
    from digestbot.store import RunLock

    schema = pg_url.rsplit("%3D", 1)[1]
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}_b"'))
    here, again, other = (
        open_store(pg_url),
        open_store(pg_url),
        open_store(pg_url.replace(schema, schema + "_b")),
    )
    try:
        with RunLock(here):
            with pytest.raises(LockError):
                RunLock(again).acquire()
            with RunLock(other):  # another schema: another store
                pass
    finally:
        for store in (here, again, other):
            store.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}_b" CASCADE'))
        admin.dispose()
