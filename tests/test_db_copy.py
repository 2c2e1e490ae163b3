"""`digestbot db copy`: a store moved from SQLite to PostgreSQL and back keeps every row,
every link already sent, and its history (a run on the copy resends nothing)."""

from __future__ import annotations

import email
import email.policy
import mailbox
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from digestbot.cli import main
from digestbot.store import Subscriber, open_store
from digestbot.store.copy import tables

from .conftest import new_store
from .pipeline_helpers import add, fill_inbox, maildir_recipients
from .test_web_support import LINK, SECRET, client_for, web_app

ENV = {
    "DIGESTBOT_SECRET_KEY": SECRET,
    "DIGESTBOT_DIGEST_SITE_URL": "http://testserver",
}
DAY1 = ["--now", "2026-11-22T12:00:00Z"]


def _dump(db: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order."""
    store = open_store(db, create=False)
    try:
        with store.engine.connect() as conn:
            return {
                t.name: [tuple(row) for row in conn.execute(t.select().order_by(*t.primary_key))]
                for t in tables()
            }
    finally:
        store.dispose()


def _source(runner: CliRunner, tmp_path: Path) -> str:
    """A lived-in SQLite store: papers, readers of every kind, sent digests, feedback."""
    db = new_store(tmp_path / "old.db")
    fill_inbox(tmp_path / "inbox", 3)
    store = open_store(db)
    for n, formats in enumerate(["email", "both", "rss"]):
        add(store, f"reader{n}@example.org", send_hour=0, formats=formats)
    add(store, "later@example.org", send_hour=23, timezone="Europe/Berlin")
    store.dispose()
    ran = runner.invoke(main, ["run", "--db", db, *DAY1], env=ENV)
    assert ran.exit_code == 0, ran.output
    liked = runner.invoke(main, ["papers", "--db", db, "--json", "--limit", "1"])
    paper = liked.output.split('"id": "', 1)[1].split('"', 1)[0]
    up = runner.invoke(main, ["subscribers", "update", "1", "--like", paper, "--db", db])
    assert up.exit_code == 0, up.output
    return db


def _links(maildir: Path) -> list[str]:
    found = []
    for message in mailbox.Maildir(maildir, factory=None):
        parsed = email.message_from_bytes(bytes(message), policy=email.policy.default)
        text = parsed.get_body(preferencelist=("plain",)).get_content()  # type: ignore[attr-defined]
        found += [p for p in LINK.findall(text) if p.startswith(("/preferences/", "/unsub"))]
    return found


@pytest.mark.anyio
async def test_sqlite_to_postgresql_and_back(
    runner: CliRunner, tmp_path: Path, pg_url: str
) -> None:
    db = _source(runner, tmp_path)
    before = _dump(db)
    assert before["digests"] and before["digest_items"] and before["feedback"]

    assert runner.invoke(main, ["db", "upgrade", "--db", pg_url]).exit_code == 0
    copied = runner.invoke(main, ["db", "copy", db, pg_url])
    assert copied.exit_code == 0, copied.output
    lines = copied.output.splitlines()
    papers = len(before["papers"])
    # the names are padded to the longest table's: any run of spaces
    assert f"papers: {papers} rows (source {papers})" in [" ".join(x.split()) for x in lines]
    assert lines[-1].startswith(f"Copied {sum(map(len, before.values()))} rows in ")
    assert lines[-1].endswith("every count matches.")
    assert _dump(pg_url) == before

    # a full destination is refused, and left as it was
    again = runner.invoke(main, ["db", "copy", db, pg_url])
    assert again.exit_code == 1
    assert (
        "is not empty: dumps (" in again.output and "Hint: Copy into a new, empty" in again.output
    )
    assert _dump(pg_url) == before

    # the links in the emails already sent work against the copy
    links = _links(tmp_path / "maildir")
    assert len(links) == 4  # two readers with email, preferences and unsubscribe each
    # feeds built from the copy, not the files the first run wrote
    app = web_app(tmp_path, pg_url, digest__feeds_dir=str(tmp_path / "none"))
    async with client_for(app) as client:
        for path in links:
            page = await client.get(path)
            assert page.status_code == 200, (path, page.text[:300])
        columns = list(Subscriber.__table__.columns.keys())
        token = before["subscribers"][1][columns.index("feed_token")]
        feed = await client.get(f"/feeds/{token}.atom")
        assert feed.status_code == 200 and b"<entry>" in feed.content

    # no one gets the same digest twice, and new rows get new ids
    mails = maildir_recipients(tmp_path / "maildir")
    rerun = runner.invoke(main, ["run", "--db", pg_url, *DAY1], env=ENV)
    assert "due:     0 subscribers" in rerun.output, rerun.output
    assert maildir_recipients(tmp_path / "maildir") == mails
    added = runner.invoke(
        main, ["subscribers", "add", "new@example.org", "-k", "x", "--db", pg_url]
    )
    assert added.output == f"Added subscriber {len(before['subscribers']) + 1}: new@example.org\n"

    # and back into a new SQLite file: the same rows again
    back = new_store(tmp_path / "back.db")
    home = runner.invoke(main, ["db", "copy", pg_url, back])
    assert home.exit_code == 0, home.output
    after = _dump(back)
    # what changed on PostgreSQL meanwhile: one new reader, the last run's summary
    assert after["subscribers"][:-1] == before["subscribers"]
    assert [r for r in after["meta"] if r[0] != "last_run"] == [
        r for r in before["meta"] if r[0] != "last_run"
    ]
    assert {k: v for k, v in after.items() if k not in ("subscribers", "meta")} == {
        k: v for k, v in before.items() if k not in ("subscribers", "meta")
    }


def test_copy_refuses_a_missing_or_unmigrated_destination(
    runner: CliRunner, tmp_path: Path, pg_url: str
) -> None:
    db = new_store(tmp_path / "a.db")
    missing = runner.invoke(main, ["db", "copy", db, str(tmp_path / "b.db")])
    assert missing.exit_code == 1 and "no store at" in missing.output
    assert not (tmp_path / "b.db").exists()
    bare = runner.invoke(main, ["db", "copy", db, pg_url])
    assert bare.exit_code == 1 and "is not a digestbot store" in bare.output
    same = runner.invoke(main, ["db", "copy", db, db])
    assert same.exit_code == 1 and "the same database" in same.output
    store = open_store(db)
    with store.session() as session:
        assert session.scalars(select(Subscriber)).first() is None
    store.dispose()
