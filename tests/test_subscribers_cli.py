"""`digestbot subscribers ...` end to end through the command line, exact output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from digestbot.cli import main

from .conftest import new_store


def run(runner: CliRunner, *args: str, input: str | None = None):
    return runner.invoke(main, ["subscribers", *args, "--db", "s.db"], input=input)


@pytest.fixture(autouse=True)
def _store(tmp_path: Path) -> None:
    """Commands other than `run` refuse a missing store: make it as `db upgrade` does."""
    new_store(tmp_path / "s.db")


def test_add_list_show_update_remove(runner: CliRunner) -> None:
    r = run(
        runner,
        "add",
        "Ada@Example.org",
        "--name",
        "Ada",
        "-k",
        "sae, interpretability",
        "--tz",
        "Europe/Berlin",
        "--send-hour",
        "7",
    )
    assert (r.exit_code, r.output) == (0, "Added subscriber 1: Ada@example.org\n")
    r = run(
        runner,
        "add",
        "bob@example.org",
        "-k",
        "retrieval",
        "--frequency",
        "weekly",
        "--weekday",
        "fri",
    )
    assert r.exit_code == 0
    r = run(runner, "list", "--json")
    data = json.loads(r.output)
    assert [(d["id"], d["email"], d["weekday"]) for d in data] == [
        (1, "Ada@example.org", 0),
        (2, "bob@example.org", 4),
    ]
    assert "feed_token" not in data[0]
    r = run(runner, "list")
    assert r.exit_code == 0 and r.output.endswith("2 subscribers\n")
    assert "Ada@example.org" in r.output and "weekly Fri 08:00 UTC" in r.output
    r = run(runner, "show", "ada@example.org", "--json", "--tokens")
    shown = json.loads(r.output)
    assert shown["keywords"] == ["sae", "interpretability"] and len(shown["feed_token"]) == 32
    r = run(runner, "show", shown["feed_token"])
    assert "email:          Ada@example.org\n" in r.output
    assert "keywords:       sae, interpretability\n" in r.output
    r = run(runner, "update", "1", "--send-hour", "21", "--status", "unsubscribed")
    assert (r.exit_code, r.output) == (0, "Updated subscriber 1: Ada@example.org\n")
    r = run(runner, "list", "--status", "unsubscribed", "--json")
    assert [(d["id"], d["send_hour"], d["timezone"]) for d in json.loads(r.output)] == [
        (1, 21, "Europe/Berlin")
    ]
    r = run(runner, "remove", "bob@example.org", "--yes")
    assert (r.exit_code, r.output) == (0, "Removed subscriber bob@example.org\n")
    r = run(runner, "show", "2")
    assert r.exit_code == 1
    assert r.output == (
        "Error: subscriber: no subscriber '2'\n"
        "Hint: Give an id or address from `digestbot subscribers list`.\n"
    )


def test_bad_input_errors_on_the_command_line(runner: CliRunner) -> None:
    assert run(runner, "add", "ada@example.org", "-k", "x").exit_code == 0
    cases = {
        ("add", "ADA@EXAMPLE.org", "-k", "x"): (
            "Error: email: ADA@example.org is already subscribed\n"
            "Hint: Use `digestbot subscribers update` to change an existing subscriber.\n"
        ),
        ("add", "nobody", "-k", "x"): (
            "Error: email: invalid address 'nobody': An email address must have an @-sign.\n"
            "Hint: Give an address like ada@example.org.\n"
        ),
        ("add", "b@example.org", "-k", "x", "--tz", "Europe/Berln"): (
            "Error: timezone: unknown time zone 'Europe/Berln'\n"
            "Hint: Did you mean 'Europe/Berlin'? Use an IANA name such as 'Europe/Berlin' "
            "or 'UTC'.\n"
        ),
        ("add", "b@example.org"): (
            "Error: keywords: no keywords and no liked papers: nothing to choose papers by\n"
            "Hint: Give a few comma-separated phrases, e.g. --keywords 'sparse autoencoders, "
            "mechanistic interpretability', or like some papers.\n"
        ),
        ("add", "b@example.org", "-k", "y" * 500): (
            f"Error: keywords: the keyword {'y' * 40!r}... is 500 characters long "
            "(at most 100)\n"
            "Hint: Keywords are short phrases separated by commas, e.g. "
            "'sparse autoencoders, mechanistic interpretability'.\n"
        ),
        ("add", "b@example.org", "-k", "x", "--name", "Eve\r\nBcc: all@example.org"): (
            "Error: name: the name contains line breaks or control characters\n"
            "Hint: Use a plain one-line name; line breaks could inject mail headers.\n"
        ),
    }
    for args, expected in cases.items():
        r = run(runner, *args)
        assert (r.exit_code, r.output) == (1, expected), args
    assert len(json.loads(run(runner, "list", "--json").output)) == 1


def test_import_and_export(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text(
        "email,name,keywords,timezone\n"
        'ada@example.org,Ada,"sae, interpretability",UTC\n'
        "broken,Bad,x,UTC\n"
        "bob@example.org,Bob,retrieval,Mars/Base\n"
        "carol@example.org,Carol,vision,Asia/Tokyo\n"
    )
    r = run(runner, "import", "in.csv")
    assert r.exit_code == 3
    assert r.output == (
        "Error: in.csv:3: email: invalid address 'broken': An email address must have an "
        "@-sign.\nHint: Give an address like ada@example.org.\n"
        "Error: in.csv:4: timezone: unknown time zone 'Mars/Base'\n"
        "Hint: Use an IANA name such as 'Europe/Berlin' or 'UTC'.\n"
        "Imported 2 subscribers, 2 failed.\n"
    )
    r = run(runner, "export")
    assert r.exit_code == 0
    assert r.output == (
        "email,name,keywords,liked,disliked,frequency,weekday,send_hour,timezone,max_items,"
        "min_score,formats,status\n"
        'ada@example.org,Ada,"sae, interpretability",,,daily,0,8,UTC,10,0,email,active\n'
        "carol@example.org,Carol,vision,,,daily,0,8,Asia/Tokyo,10,0,email,active\n"
    )
    r = run(runner, "export", "out.csv")
    assert (r.exit_code, r.output) == (0, "Exported 2 subscribers to out.csv\n")
    new_store("other.db")
    r = runner.invoke(
        main,
        ["subscribers", "import", "-", "--db", "other.db"],
        input=(tmp_path / "out.csv").read_text(),
    )
    assert (r.exit_code, r.output) == (0, "Imported 2 subscribers, 0 failed.\n")
    r = run(runner, "import", "missing.csv")
    assert r.exit_code == 1
    assert r.output == "Error: missing.csv: file not found\nHint: Check the path of the CSV file.\n"
