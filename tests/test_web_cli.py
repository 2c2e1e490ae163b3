"""`digestbot serve` from the command line: its options and its refusal to start unsafely."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

from digestbot.cli import main


def test_serve_help_lists_options(runner: CliRunner) -> None:
    result = runner.invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--db", "--config"):
        assert option in result.output


def test_serve_without_secret_is_an_error(runner: CliRunner) -> None:
    result = runner.invoke(main, ["serve", "--db", "web.db", "--port", "8099"])
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        "Error: web.secret_key: the signing secret is missing or shorter than 16 characters"
    )
    assert result.output.splitlines()[1].startswith("Hint: Set DIGESTBOT_SECRET_KEY")


def test_serve_rejects_bad_trusted_proxy(runner: CliRunner) -> None:
    env = {"DIGESTBOT_SECRET_KEY": "s" * 32, "DIGESTBOT_WEB_TRUSTED_PROXIES": "proxy.local"}
    result = runner.invoke(main, ["serve", "--db", "web.db"], env=env)
    assert result.exit_code == 1
    assert "Error: web.trusted_proxies: not an IP address or network: 'proxy.local'" in (
        result.output
    )


def test_serve_port_out_of_range(runner: CliRunner) -> None:
    result = runner.invoke(main, ["serve", "--port", "70000"])
    assert result.exit_code == 2
    assert "70000 is not in the range 1<=x<=65535" in result.output


@pytest.mark.parametrize("host", ["127.0.0.1", "LOCALHOST"])
def test_serve_on_loopback_does_not_warn_of_the_default_site_url(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    import uvicorn

    served: list[str] = []
    monkeypatch.setattr(uvicorn, "run", lambda _app, **kw: served.append(kw["host"]))
    assert runner.invoke(main, ["db", "upgrade", "--db", "web.db"]).exit_code == 0
    with socket.socket() as probe:  # a port free on loopback
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"DIGESTBOT_SECRET_KEY": "s" * 32}
    args = ["serve", "--db", "web.db", "--host", host, "--port", str(port)]
    result = runner.invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    assert served == [host]
    assert "serving on" in result.output
    assert "Warning" not in result.output
