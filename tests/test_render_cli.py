"""`digestbot preview` and `digestbot feeds` from the command line."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

import feedparser
from click.testing import CliRunner

from digestbot.cli import main
from digestbot.store import open_store

from .test_render_helpers import paper, reader

ENV = {"DIGESTBOT_SECRET_KEY": "test-secret-key-not-for-production"}
# two days after the fixture papers were first seen, whatever today's date is
NOW = "2026-11-23T08:00:00+00:00"


def seed(db: Path) -> None:
    store = open_store(str(db))
    with store.session() as s:
        s.add_all([paper(i) for i in range(4)])
        s.add(paper(9, title="Protein folding with diffusion", abstract="Unrelated biology."))
        s.add_all([reader(1, formats="both"), reader(2, formats="rss")])
    store.dispose()


def test_preview_writes_files_and_records_nothing(runner: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    seed(db)
    out = tmp_path / "pv"
    result = runner.invoke(
        main,
        [
            *("preview", "--db", str(db), "--now", NOW),
            *("--subscriber", "READER1@example.org", "--out", str(out)),
        ],
        env=ENV,
    )
    assert result.exit_code == 0, result.output
    names = ["digest.html", "digest.txt", "digest.eml", "feed.rss", "feed.atom"]
    assert result.stdout.splitlines() == [str(out / n) for n in names]
    msg = message_from_bytes((out / "digest.eml").read_bytes(), policy=policy.default)
    assert all(not part.defects for part in msg.walk())
    assert msg["To"] == "Ada <reader1@example.org>"
    assert "Sparse autoencoders reveal features" in (out / "digest.txt").read_text()
    assert feedparser.parse((out / "feed.atom").read_bytes()).bozo == 0
    assert "Preview of reader1@example.org's digest for" in result.stderr
    store = open_store(str(db))
    with store.engine.connect() as conn:
        from sqlalchemy import text

        assert conn.execute(text("select count(*) from digests")).scalar() == 0
        assert conn.execute(text("select count(*) from digest_items")).scalar() == 0
    store.dispose()


def test_preview_of_an_unknown_reader(runner: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    seed(db)
    result = runner.invoke(
        main, ["preview", "--db", str(db), "--subscriber", "nobody@example.org"], env=ENV
    )
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: subscriber: no subscriber 'nobody@example.org'\n"
        "Hint: Give an id or address from `digestbot subscribers list`.\n"
    )


def test_feeds_command(runner: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    seed(db)
    result = runner.invoke(
        main, ["feeds", "--db", str(db)], env={**ENV, "DIGESTBOT_DIGEST_FEEDS_DIR": "out"}
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "Wrote feeds for 2 readers and the public feed in out.\n"
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [
        "feedtoken0001abcdefghijkl.atom",
        "feedtoken0001abcdefghijkl.rss",
        "feedtoken0002abcdefghijkl.atom",
        "feedtoken0002abcdefghijkl.rss",
        "new.atom",
        "new.rss",
    ]
    public = feedparser.parse((tmp_path / "out" / "new.rss").read_bytes())
    assert public.bozo == 0 and len(public.entries) == 5


def test_preview_with_nothing_new_shows_the_note(runner: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    store = open_store(str(db))
    with store.session() as s:
        s.add(reader(1))
    store.dispose()
    result = runner.invoke(
        main, ["preview", "--db", str(db), "--subscriber", "reader1@example.org"], env=ENV
    )
    assert result.exit_code == 0, result.output
    assert "no new papers: no digest would be sent (digest.send_empty is off)" in result.stderr
    assert "Nothing new today" in (tmp_path / "preview" / "digest.txt").read_text()
