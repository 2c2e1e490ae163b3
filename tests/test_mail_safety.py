"""Over SMTP, settings meant for one machine are refused before any mail leaves."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from digestbot.cli import main
from digestbot.deliver import send_due
from digestbot.deliver.safety import is_loopback_host, problems
from digestbot.errors import ConfigError
from digestbot.store import open_store

from .conftest import PUBLIC_MAIL, PUBLIC_MAIL_ENV, make_config
from .pipeline_helpers import fill_inbox
from .smtp_sink import SmtpSink
from .test_deliver_support import seed_outbox


def test_defaults_over_smtp_are_refused_naming_each_setting(
    tmp_path: Path, smtp_sink: SmtpSink, runner: CliRunner
) -> None:
    db = str(tmp_path / "d.db")
    store = open_store(db)
    seed_outbox(store, 2)
    store.dispose()
    env = {
        "DIGESTBOT_DELIVERY_TRANSPORT": "smtp",
        "DIGESTBOT_SMTP_PORT": str(smtp_sink.port),
        "DIGESTBOT_SECRET_KEY": "change-me-to-the-output-of-python3-c-import-secrets",
    }
    result = runner.invoke(main, ["send", "--db", db], env=env)
    assert result.exit_code == 1, result.output
    error, hint = result.output.splitlines()[:2]
    assert error.startswith("Error: digest.site_url, digest.from_address, web.secret_key: ")
    assert "'http://127.0.0.1:8080'" in error and "'digestbot@localhost'" in error
    assert "placeholder" in error
    assert hint.startswith("Hint: ") and "smtp.allow_test_settings" in hint
    assert smtp_sink.received == []  # nothing left, not even a connection's worth

    # with settings that look like a real site's, the same command sends
    result = runner.invoke(main, ["send", "--db", db], env={**env, **PUBLIC_MAIL_ENV})
    assert result.exit_code == 0, result.output
    assert len(smtp_sink.received) == 2


def test_each_unsafe_setting_is_named(tmp_path: Path) -> None:
    def found(**kw: object) -> list[str]:
        config = make_config(tmp_path, "x.db", **{**PUBLIC_MAIL, **kw})
        return [line.split(" ", 1)[0] for line in problems(config)]

    assert found() == []
    assert found(digest__site_url="http://[::1]:8080") == ["digest.site_url"]
    assert found(digest__site_url="http://localhost/") == ["digest.site_url"]
    assert found(digest__site_url="https://127.3.0.1") == ["digest.site_url"]
    assert found(delivery__envelope_from="bounces@localhost") == ["delivery.envelope_from"]
    assert found(digest__from_address="digest@127.0.0.1") == ["digest.from_address"]
    for secret in ("", "aaaaaaaaaaaaaaaaaaaaaaaa", "test-secret-key-not-for-production"):
        assert found(web__secret_key=secret) == ["web.secret_key"], secret
    assert is_loopback_host("mail.localhost") and not is_loopback_host("papers.example.org")


def test_maildir_and_allowed_test_setups_are_unaffected(
    tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    db = str(tmp_path / "d.db")
    store = open_store(db)
    try:
        seed_outbox(store, 2)
        # the defaults (the demo): a Maildir
        assert send_due(store, make_config(tmp_path, db), limit=1).sent == 1
        smtp = {"delivery__transport": "smtp", "smtp__port": smtp_sink.port}
        with pytest.raises(ConfigError):
            send_due(store, make_config(tmp_path, db, **smtp))
        # said out loud: a test setup on one machine
        allowed = make_config(tmp_path, db, smtp__allow_test_settings=True, **smtp)
        assert send_due(store, allowed).sent == 1
    finally:
        store.dispose()
    assert len(smtp_sink.received) == 1


def test_a_run_stops_before_any_work(
    tmp_path: Path, smtp_sink: SmtpSink, runner: CliRunner
) -> None:
    fill_inbox(tmp_path / "inbox", 1)
    env = {
        "DIGESTBOT_DELIVERY_TRANSPORT": "smtp",
        "DIGESTBOT_SMTP_PORT": str(smtp_sink.port),
        "DIGESTBOT_INGEST_INBOX": str(tmp_path / "inbox"),
        "DIGESTBOT_SECRET_KEY": PUBLIC_MAIL["web__secret_key"],
    }
    result = runner.invoke(main, ["run", "--db", str(tmp_path / "d.db")], env=env)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: digest.site_url, digest.from_address: refusing")
    # nothing ingested, nothing queued
    assert not (tmp_path / "inbox" / "processed").exists()
    assert len(list((tmp_path / "inbox").iterdir())) == 1


def test_the_web_front_refuses_to_start(tmp_path: Path) -> None:
    from digestbot.web import create_app

    config = make_config(tmp_path, str(tmp_path / "d.db"), delivery__transport="smtp")
    with pytest.raises(ConfigError) as info:
        create_app(config)
    assert info.value.field == "digest.site_url, digest.from_address, web.secret_key"
