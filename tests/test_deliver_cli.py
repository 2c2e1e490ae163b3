"""`digestbot send` and `digestbot outbox`: output, JSON, exit codes."""

from __future__ import annotations

import json
import mailbox
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from digestbot.cli import main
from digestbot.store import open_store

from .conftest import PUBLIC_MAIL_ENV, new_store
from .smtp_sink import SmtpSink, free_port
from .test_deliver_support import seed_outbox


def _seed(db: str, n: int = 3) -> list[str]:
    store = open_store(db)
    try:
        return seed_outbox(store, n)
    finally:
        store.dispose()


def _smtp_env(port: int) -> dict[str, str]:
    return {
        "DIGESTBOT_DELIVERY_TRANSPORT": "smtp",
        "DIGESTBOT_SMTP_PORT": str(port),
        **PUBLIC_MAIL_ENV,
    }


@pytest.fixture(autouse=True)
def _store(tmp_path: Path) -> None:
    """Commands other than `run` refuse a missing store: make it as `db upgrade` does."""
    new_store(tmp_path / "d.db")


def test_send_nothing_due(runner: CliRunner, tmp_path: Path) -> None:
    db = str(tmp_path / "d.db")
    result = runner.invoke(main, ["send", "--db", db])
    assert (result.exit_code, result.output) == (4, "Nothing is due.\n")
    result = runner.invoke(main, ["send", "--db", db, "--nothing-exit-code", "0"])
    assert (result.exit_code, result.output) == (0, "Nothing is due.\n")


def test_send_to_the_default_maildir(runner: CliRunner, tmp_path: Path) -> None:
    db = str(tmp_path / "d.db")
    addresses = _seed(db)
    result = runner.invoke(main, ["send", "--db", db])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(
        r"Sent 3 digests in \d+\.\d s \(\d+/s\) via maildir: 0 to retry, 0 failed, 0 bounced\.\n",
        result.output,
    ), result.output
    box = mailbox.Maildir(tmp_path / "maildir", create=False)
    assert sorted(m["To"] for m in box) == sorted(addresses)
    assert runner.invoke(main, ["send", "--db", db]).output == "Nothing is due.\n"


def test_send_json_and_limit(runner: CliRunner, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    db = str(tmp_path / "d.db")
    _seed(db, 5)
    result = runner.invoke(
        main, ["send", "--db", db, "--limit", "2", "--json"], env=_smtp_env(smtp_sink.port)
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["sent"], data["due"], data["transport"], data["failed"]) == (2, 2, "smtp", 0)
    assert len(smtp_sink.received) == 2


def test_send_dry_run(runner: CliRunner, tmp_path: Path) -> None:
    db = str(tmp_path / "d.db")
    _seed(db)
    result = runner.invoke(main, ["send", "--db", db, "--dry-run"])
    assert (result.exit_code, result.output) == (
        0,
        "Dry run: wrote 3 due digests as .eml files; the outbox is unchanged.\n",
    )
    assert len(list((tmp_path / "outbox-eml").glob("*.eml"))) == 3
    assert runner.invoke(main, ["outbox", "--db", db]).output.startswith("queued: 3\n")


def test_send_with_failures_exits_3(runner: CliRunner, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    db = str(tmp_path / "d.db")
    _seed(db, 3)
    smtp_sink.handler.rcpt_replies = {"reader1@example.org": "550 5.1.1 no such user"}
    result = runner.invoke(main, ["send", "--db", db], env=_smtp_env(smtp_sink.port))
    assert result.exit_code == 3
    assert result.output.endswith("via smtp: 0 to retry, 0 failed, 1 bounced.\n")


def test_unreachable_server_exits_3_with_a_hint(runner: CliRunner, tmp_path: Path) -> None:
    db = str(tmp_path / "d.db")
    _seed(db, 2)
    port = free_port()
    env = {**_smtp_env(port), "DIGESTBOT_SMTP_POOL_SIZE": "1"}
    result = runner.invoke(main, ["send", "--db", db], env=env)
    assert result.exit_code == 3
    assert result.stderr == (
        f"Error: stopped early: cannot connect to 127.0.0.1:{port}: "
        f"{result.stderr.split(': ', 3)[3].splitlines()[0]}\n"
        "Hint: The rest stays queued; run `digestbot send` again later.\n"
    )
    assert runner.invoke(main, ["outbox", "--db", db]).output.startswith("queued: 1  retry: 1\n")


def test_bad_maildir_is_one_error_line(runner: CliRunner, tmp_path: Path) -> None:
    db = str(tmp_path / "d.db")
    _seed(db, 1)
    (tmp_path / "file").write_text("x")
    result = runner.invoke(
        main, ["send", "--db", db], env={"DIGESTBOT_DELIVERY_MAILDIR": str(tmp_path / "file")}
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: delivery.maildir: cannot write to {tmp_path}/file")
    assert result.stderr.endswith(
        "Hint: Make the folder writable, or point delivery.maildir elsewhere.\n"
    )


def test_outbox_listing(runner: CliRunner, tmp_path: Path) -> None:
    db = str(tmp_path / "d.db")
    assert runner.invoke(main, ["outbox", "--db", db]).output == "The outbox is empty.\n"
    _seed(db, 3)
    runner.invoke(main, ["send", "--db", db, "--limit", "1"])
    result = runner.invoke(main, ["outbox", "--db", db])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "queued: 2  sent: 1"
    assert lines[1].split() == [
        "id",
        "period",
        "recipient",
        "state",
        "tries",
        "next/sent",
        "last",
        "error",
    ]
    assert len(lines) == 5
    result = runner.invoke(main, ["outbox", "--db", db, "--state", "sent", "--json"])
    data = json.loads(result.output)
    assert data["counts"] == {"queued": 2, "sent": 1}
    assert [d["recipient"] for d in data["digests"]] == ["reader0@example.org"]
    bad = runner.invoke(main, ["outbox", "--db", db, "--state", "lost"])
    assert bad.exit_code == 2


def test_outbox_requeue_failed(runner: CliRunner, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    db = str(tmp_path / "d.db")
    _seed(db, 2)
    smtp_sink.handler.data_replies = ["554 5.7.1 no"] * 2
    assert runner.invoke(main, ["send", "--db", db], env=_smtp_env(smtp_sink.port)).exit_code == 3
    result = runner.invoke(main, ["outbox", "--db", db, "--requeue-failed"])
    assert result.output.splitlines()[:2] == ["Requeued 2 failed digests.", "queued: 2"]
    assert runner.invoke(main, ["send", "--db", db], env=_smtp_env(smtp_sink.port)).exit_code == 0
    assert len(smtp_sink.received) == 2
