"""`digestbot ingest` and `digestbot papers` as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from digestbot.cli import main

from .conftest import SEEDS, new_store

DUMPS = Path(__file__).resolve().parent / "data" / "dumps"
HEADER = (
    "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
    "byAK and the research community\n\n"
)


@pytest.fixture(autouse=True)
def _store(tmp_path: Path) -> None:
    """Commands other than `run` refuse a missing store: make it as `db upgrade` does."""
    new_store(tmp_path / "x.db")


def test_seeds_json_twice(runner: CliRunner) -> None:
    first = runner.invoke(main, ["ingest", str(SEEDS), "--db", "x.db", "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout) == {
        "files": 5,
        "papers_new": 255,
        "papers_updated": 0,
        "failed": [],
    }
    second = runner.invoke(main, ["ingest", str(SEEDS), "--db", "x.db", "--json"])
    assert second.exit_code == 4  # nothing to do
    assert json.loads(second.stdout) == {
        "files": 5,
        "papers_new": 0,
        "papers_updated": 0,
        "failed": [],
    }
    assert second.stderr == ""


def test_summary_table_and_nothing_exit_code(runner: CliRunner) -> None:
    first = runner.invoke(main, ["ingest", str(SEEDS), "--db", "x.db"])
    assert first.exit_code == 0
    lines = first.stdout.splitlines()
    assert lines[-1] == "Ingested 5 files, 255 new papers, 0 updated."
    assert [c.strip() for c in lines[0].split("┃")] == [
        "File",
        "Format",
        "Listed",
        "Papers",
        "New",
        "Updated",
        "Status",
    ]
    cells = [c.strip() for c in lines[2].split("│")]
    assert cells[:2] + cells[3:] == ["000_9d4c3e15241ae462.txt", "text", "46", "46", "0", "ok"]
    again = runner.invoke(main, ["ingest", str(SEEDS), "--db", "x.db"])
    assert again.exit_code == 4
    assert again.stdout.splitlines()[-1] == (
        "Ingested 5 files, 0 new papers, 0 updated, 5 already ingested."
    )
    zero = runner.invoke(main, ["ingest", str(SEEDS), "--db", "x.db", "--nothing-exit-code", "0"])
    assert zero.exit_code == 0
    quiet = runner.invoke(main, ["-q", "ingest", str(SEEDS), "--db", "x.db"])
    assert quiet.stdout == "Ingested 5 files, 0 new papers, 0 updated, 5 already ingested.\n"


def test_no_paths_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(main, ["ingest", "--db", "x.db"])
    assert result.exit_code == 2
    assert "Error: give one or more PATHs, or --inbox" in result.stderr


def test_bad_date_option(runner: CliRunner) -> None:
    result = runner.invoke(main, ["ingest", str(SEEDS), "--date", "2024-13-01", "--db", "x.db"])
    assert result.exit_code == 2
    assert "Invalid value for '--date'" in result.stderr


def _bad_inputs(folder: Path) -> dict[str, tuple[Path, str]]:
    """Each bad input and the exact error line it must give."""
    cases: dict[str, tuple[Path, str]] = {}

    def add(name: str, data: bytes, message: str) -> None:
        path = folder / name
        path.write_bytes(data)
        cases[name] = (path, message.format(path=path))

    add("empty.txt", b"", "Error: {path}: empty file")
    add(
        "binary.bin",
        b"\x7fELF\x02\x01\x01\x00" + bytes(300),
        ("Error: {path}: binary file, not a text or JSON dump"),
    )
    seed = (SEEDS / "000_9d4c3e15241ae462.txt").read_text(encoding="utf-8")
    cut = seed[: seed.index("EntroPE: Entropy-Guided") + len("EntroPE: Entropy-Guided")]
    add(
        "cut.txt",
        cut.encode(),
        "Error: {path}:21: the dump ends after the title 'EntroPE: Entropy-Guided' with no "
        "abstract",
    )
    add(
        "no_abstract.txt",
        (DUMPS / "no_abstract.txt").read_bytes(),
        "Error: {path}:21: the paper 'A Paper With No Abstract' has no abstract",
    )
    add(
        "other.csv",
        b"id,title\n1,Attention\n",
        "Error: {path}:1: not a papers listing: the file is a table (CSV), not a papers page",
    )
    add(
        "invalid.json",
        b'[{"paper": {"title": "T", "summary": "S"}},\n {"paper": ',
        "Error: {path}:2: invalid JSON: Expecting value (column 12)",
    )
    return cases


def test_each_bad_input_names_file_and_line(runner: CliRunner, tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    cases = _bad_inputs(folder)
    for name, (path, expected) in cases.items():
        result = runner.invoke(main, ["ingest", str(path), "--db", "x.db"])
        assert result.exit_code == 1, name
        assert result.stderr.splitlines()[0] == expected, name
        assert result.stderr.splitlines()[1].startswith("Hint: "), name
        assert result.stdout.splitlines()[-1] == "Ingested 1 file, 0 new papers, 0 updated, " + (
            "1 failed."
        )
    missing = tmp_path / "missing.txt"
    result = runner.invoke(main, ["ingest", str(missing), "--db", "x.db"])
    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: {missing}: no such file or folder\nHint: Check the path and try again.\n",
    )


def test_bad_inputs_beside_good_ones_exit_3(runner: CliRunner, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    cases = _bad_inputs(folder)
    shutil.copy(SEEDS / "002_43cfd06bb1d395c5.txt", folder / "good.txt")
    latin = folder / "latin1.txt"
    latin.write_bytes((HEADER + "Dec 29\n\nNaïve Title\n\nUn résumé.\n").encode("latin-1"))
    result = runner.invoke(main, ["ingest", str(folder), "--db", "x.db", "--json"])
    assert result.exit_code == 3
    report = json.loads(result.stdout)
    assert (report["files"], report["papers_new"]) == (len(cases) + 2, 41 + 1)
    failed = {Path(f["file"]).name: f for f in report["failed"]}
    assert sorted(failed) == sorted(cases)
    assert failed["cut.txt"]["line"] == 21 and failed["empty.txt"]["line"] is None
    assert result.stderr.startswith(f"Warning: {latin}:13: not UTF-8 (byte 0xef); decoded as")
    papers = json.loads(runner.invoke(main, ["papers", "--db", "x.db", "--json"]).stdout)
    assert "Naïve Title" in {p["title"] for p in papers}


def test_over_the_size_limit(runner: CliRunner, tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    with big.open("wb") as fh:
        fh.truncate(50 * 1024 * 1024)
    runner_env = {"DIGESTBOT_INGEST_MAX_FILE_MB": "10"}
    result = runner.invoke(main, ["ingest", str(big), "--db", "x.db"], env=runner_env)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {big}: file is 50.0 MB, over the limit of 10 MB\n"
        "Hint: Split the dump, or raise ingest.max_file_mb if it really is one listing.\n"
    )


def test_no_read_permission(tmp_path: Path) -> None:
    """Root reads every file regardless of its mode, so as root the command runs without
    the capabilities that let it (setpriv drops them); the file then is unreadable."""
    secret = tmp_path / "secret.txt"
    shutil.copy(SEEDS / "000_9d4c3e15241ae462.txt", secret)
    os.chmod(secret, 0)
    args = [sys.executable, "-m", "digestbot", "ingest", str(secret), "--db", "x.db"]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "running as root needs setpriv (util-linux) for this test"
        args = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTBOT_")}
    try:
        result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path)
    finally:
        os.chmod(secret, 0o600)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        f"Error: {secret}: permission denied: cannot read the file",
        f"Hint: Make it readable by this user (uid of the digestbot run), e.g. chmod a+r {secret}",
    ]


def test_inbox_from_configuration(runner: CliRunner, tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    shutil.copy(SEEDS / "003_2edaceab08cb7299.txt", inbox / "a.txt")
    (inbox / "b.txt").write_bytes(b"")
    env = {"DIGESTBOT_INGEST_INBOX": str(inbox)}
    result = runner.invoke(main, ["ingest", "--inbox", "--db", "x.db", "--json"], env=env)
    assert result.exit_code == 3
    assert json.loads(result.stdout)["papers_new"] == 62
    assert (inbox / "processed" / "a.txt").is_file()
    assert (inbox / "failed" / "b.txt.error").read_text(encoding="utf-8") == (
        f"{inbox / 'b.txt'}: empty file\n"
        "Hint: The download or copy probably failed; fetch the dump again.\n"
    )
    nothing = runner.invoke(main, ["ingest", "--inbox", "--db", "x.db"], env=env)
    assert nothing.exit_code == 4
    assert nothing.stdout == "Ingested 0 files, 0 new papers, 0 updated.\n"


def test_the_inbox_says_what_it_skipped(runner: CliRunner, tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    shutil.copy(SEEDS / "003_2edaceab08cb7299.txt", inbox / "a.txt")
    os.mkfifo(inbox / "pipe")
    env = {"DIGESTBOT_INGEST_INBOX": str(inbox)}
    result = runner.invoke(main, ["ingest", "--inbox", "--db", "x.db"], env=env)
    assert result.exit_code == 0, result.output
    assert f"Warning: {inbox / 'pipe'}: skipped: not a regular file\n" in result.stderr
    assert result.stdout.endswith("Ingested 1 file, 62 new papers, 0 updated.\n")


def test_the_ingest_lock_goes_in_store_lock_dir_as_the_run_lock_does(
    runner: CliRunner, tmp_path: Path
) -> None:
    # `~` in store.lock_dir is the home folder, for `digestbot ingest` as for `run`
    home = tmp_path / "home"
    (home / "locks").mkdir(parents=True)
    env = {"HOME": str(home), "DIGESTBOT_STORE_LOCK_DIR": "~/locks"}
    result = runner.invoke(main, ["ingest", str(SEEDS), "--db", "x.db"], env=env)
    assert result.exit_code == 0, result.output
    assert (home / "locks" / "x.db.ingest.lock").exists()


def test_missing_inbox_folder(runner: CliRunner) -> None:
    result = runner.invoke(main, ["ingest", "--inbox", "--db", "x.db"])
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: inbox: ingest.inbox: the inbox folder does not exist\n"
        "Hint: Create it (mkdir -p inbox) or point ingest.inbox at the right folder.\n"
    )


def test_papers_command(runner: CliRunner) -> None:
    empty = runner.invoke(main, ["papers", "--db", "x.db"])
    assert empty.stdout == "No papers. Run `digestbot ingest PATH` to add some.\n"
    runner.invoke(main, ["ingest", str(SEEDS), "--db", "x.db"])
    listing = runner.invoke(main, ["papers", "--db", "x.db"])
    assert listing.exit_code == 0
    assert listing.stdout.splitlines()[-1] == "255 papers from 5 dumps."
    assert len(listing.stdout.splitlines()) == 255 + 3  # header, rule, rows, summary
    some = runner.invoke(main, ["papers", "--db", "x.db", "--limit", "3"])
    assert some.stdout.splitlines()[-1] == "3 of 255 papers from 5 dumps."
    data = json.loads(runner.invoke(main, ["papers", "--db", "x.db", "--json"]).stdout)
    assert len(data) == 255
    latest = max(p["listed_on"] for p in data)
    since = json.loads(
        runner.invoke(main, ["papers", "--db", "x.db", "--json", "--since", latest]).stdout
    )
    assert len(since) == sum(p["listed_on"] == latest for p in data) > 0
    none = runner.invoke(main, ["papers", "--db", "x.db", "--since", "2999-01-01"])
    assert none.stdout == (
        "No papers listed since 2999-01-01. Run `digestbot ingest PATH` to add some.\n"
    )


@pytest.mark.parametrize("command", [["ingest", "--help"], ["papers", "--help"]])
def test_help(runner: CliRunner, command: list[str]) -> None:
    result = runner.invoke(main, command)
    assert result.exit_code == 0 and "Usage:" in result.stdout
