"""`digestbot demo`: the whole pipeline on the seeds, twice in the same folder."""

from __future__ import annotations

import mailbox
from pathlib import Path

import feedparser
from click.testing import CliRunner

from digestbot.cli import main
from digestbot.pipeline.demo import READERS

from .pipeline_helpers import maildir_recipients

NOW = ["--now", "2026-11-22T12:00:00+00:00"]


def _open_paths(output: str) -> dict[str, Path]:
    paths = {}
    for line in output.splitlines():
        for label in ("Maildir:", "HTML:", "Feed:"):
            if line.strip().startswith(label):
                paths[label.rstrip(":")] = Path(line.split(label, 1)[1].split()[0])
    return paths


def test_demo_runs_the_whole_pipeline_and_twice(runner: CliRunner) -> None:
    first = runner.invoke(main, ["demo", *NOW])
    assert first.exit_code == 0, first.output
    demo = Path("demo").resolve()
    assert first.output.startswith("Ingested 5 seed files from ")
    for reader in READERS:
        assert f"{reader['name']} <{reader['email']}>" in first.output
    assert "matches " in first.output  # the why column
    assert "digests: 3 queued, 1 feed only, 0 empty, 0 failed" in first.output
    assert "send:    3 sent, 0 retried, 0 failed, 0 bounced" in first.output

    paths = _open_paths(first.output)
    assert paths["Maildir"] == demo / "maildir"
    email_readers = {str(r["email"]) for r in READERS if r["formats"] != "rss"}
    assert maildir_recipients(paths["Maildir"]) == dict.fromkeys(email_readers, 1)
    html = paths["HTML"].read_text(encoding="utf-8")
    assert paths["HTML"].parent == demo / "html" and "<html" in html.lower()
    feed = feedparser.parse(paths["Feed"].read_bytes())
    assert not feed.bozo and len(feed.entries) >= 1

    second = runner.invoke(main, ["demo", *NOW])
    assert second.exit_code == 0, second.output
    # a fresh start, not a second helping on top of the first
    assert "digests: 3 queued, 1 feed only" in second.output
    assert maildir_recipients(paths["Maildir"]) == dict.fromkeys(email_readers, 1)
    assert len(mailbox.Maildir(paths["Maildir"], factory=None)) == 3


def test_demo_refuses_a_folder_it_did_not_make(runner: CliRunner) -> None:
    Path("mine").mkdir()
    Path("mine/notes.txt").write_text("keep me")
    result = runner.invoke(main, ["demo", "--dir", "mine", *NOW])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {Path('mine').resolve()} is not empty and was not made by `digestbot demo`\n"
        "Hint: Pass --dir with a new or empty folder; nothing was changed.\n"
    )
    assert Path("mine/notes.txt").read_text() == "keep me"


def test_demo_finds_seeds_without_a_seeds_folder_here(runner: CliRunner) -> None:
    assert not Path("seeds").exists()
    result = runner.invoke(main, ["demo", "--dir", "elsewhere", *NOW])
    assert result.exit_code == 0, result.output
    assert Path("elsewhere/digestbot.db").is_file()
    assert "Ingested 5 seed files" in result.output
