"""The CLI as a whole: every command has help; errors print once, with a hint, exit 1."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from digestbot.cli import main


def _all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found.extend(_all_commands(command, (*prefix, name)))
    return found


@pytest.mark.parametrize("path", _all_commands(main), ids=" ".join)
def test_every_command_has_help(runner: CliRunner, path: tuple[str, ...]) -> None:
    result = runner.invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    command = main
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    assert command.help, f"`digestbot {' '.join(path)}` has no help text"
    assert "Usage: main" in result.output or "Usage:" in result.output


def test_library_errors_become_one_line_and_a_hint(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["db", "upgrade", "--db", str(tmp_path / "no" / "x.db")])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: store.db: folder {tmp_path / 'no'} does not exist\n"
        "Hint: Create the folder, or point --db at another path.\n"
    )


def test_db_upgrade_then_current(runner: CliRunner) -> None:
    first = runner.invoke(main, ["db", "upgrade", "--db", "x.db"])
    assert first.exit_code == 0 and first.output.startswith("Upgraded schema from empty to ")
    again = runner.invoke(main, ["db", "upgrade", "--db", "x.db"])
    assert again.output.startswith("Schema is current (revision ")
