"""Settings: precedence, secrets, and an error naming file, key and fix for each bad input."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from digestbot.cli import main
from digestbot.config import SETTINGS, default_config, example_toml, load_config
from digestbot.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No config file from the real home or working folder leaks into these tests."""
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_precedence_defaults_file_env_command_line(tmp_path: Path) -> None:
    cfg_file = write(tmp_path / "d.toml", '[smtp]\nhost = "file.example"\nport = 2525\n')
    env = {"DIGESTBOT_SMTP_HOST": "env.example"}
    cfg = load_config(cfg_file, env=env, overrides={"smtp.port": 587})
    assert cfg.smtp.host == "env.example"
    assert cfg["smtp.port"] == 587
    assert cfg["smtp.timeout"] == 30.0
    assert cfg.sources["smtp.host"] == "$DIGESTBOT_SMTP_HOST"
    assert cfg.sources["smtp.port"] == "command line"
    assert cfg.sources["smtp.timeout"] == "default"
    only_file = load_config(cfg_file, env={})
    assert (only_file.smtp.host, only_file.smtp.port) == ("file.example", 2525)


def test_lookup_order_config_env_cwd_then_xdg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "digestbot").mkdir(parents=True)
    write(xdg / "digestbot" / "digestbot.toml", "[web]\nport = 1111\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    env = {"XDG_CONFIG_HOME": str(xdg)}
    assert load_config(env=env)["web.port"] == 1111
    write(work / "digestbot.toml", "[web]\nport = 2222\n")
    assert load_config(env=env)["web.port"] == 2222
    named = write(tmp_path / "named.toml", "[web]\nport = 3333\n")
    assert load_config(env={**env, "DIGESTBOT_CONFIG": str(named)})["web.port"] == 3333
    explicit = write(tmp_path / "explicit.toml", "[web]\nport = 4444\n")
    assert load_config(explicit, env={**env, "DIGESTBOT_CONFIG": str(named)})["web.port"] == 4444


def _error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    path = write(tmp_path / "digestbot.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    return info.value


def test_unknown_key_names_file_key_and_the_closest_one(tmp_path: Path) -> None:
    err = _error(tmp_path, "[smtp]\nhots = 'x'\n")
    assert str(err) == f"{tmp_path / 'digestbot.toml'}: smtp.hots: unknown setting 'smtp.hots'"
    assert err.hint is not None and err.hint.startswith("Did you mean 'smtp.host'?")


def test_unknown_section(tmp_path: Path) -> None:
    err = _error(tmp_path, "smtpp = 3\n")
    assert err.field == "smtpp" and err.file == str(tmp_path / "digestbot.toml")
    assert err.hint is not None and "Did you mean [smtp]?" in err.hint


def test_wrong_type(tmp_path: Path) -> None:
    err = _error(tmp_path, "[smtp]\nport = 'twenty-five'\n")
    assert str(err).endswith("smtp.port: expected a whole number, got 'twenty-five'")
    assert err.file == str(tmp_path / "digestbot.toml")
    assert err.hint == "SMTP server port. Default: 25."
    below = _error(tmp_path, "[digest]\nmax_items = 0\n")
    assert below.message == "expected a value of at least 1, got 0"


@pytest.mark.parametrize(
    ("toml", "field", "message"),
    [
        (
            "[smtp]\nport = 12345678901234567890\n",
            "smtp.port",
            "expected a value of at most 65535, got 12345678901234567890",
        ),
        ("[digest]\nmax_items = 100000\n", "digest.max_items", "expected a value of at most 100"),
        (
            "[digest]\nfrom_address = 'not an address'\n",
            "digest.from_address",
            "expected an email address such as digest@example.org",
        ),
        (
            "[digest]\nsite_url = 'javascript:alert(1)'\n",
            "digest.site_url",
            "expected an http:// or https:// address",
        ),
        (
            "[delivery]\nenvelope_from = 'Ada <ada@example.org>'\n",
            "delivery.envelope_from",
            "expected an email address",
        ),
    ],
)
def test_values_out_of_range_name_the_key(
    tmp_path: Path, toml: str, field: str, message: str
) -> None:
    err = _error(tmp_path, toml)
    assert err.field == field
    assert err.message.startswith(message)
    assert err.file == str(tmp_path / "digestbot.toml")


def test_wrong_type_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"DIGESTBOT_WEB_PORT": "x"})
    assert str(info.value) == "$DIGESTBOT_WEB_PORT: web.port: expected a whole number, got 'x'"


def test_bad_cron_expression(tmp_path: Path) -> None:
    err = _error(tmp_path, "[schedule]\ndigest_cron = '0 * * *'\n")
    assert err.field == "schedule.digest_cron" and err.file == str(tmp_path / "digestbot.toml")
    assert "bad cron expression '0 * * *'" in err.message
    assert err.hint == "Use five fields: minute hour day month weekday, e.g. '0 * * * *'."


def test_unknown_time_zone(tmp_path: Path) -> None:
    err = _error(tmp_path, "[schedule]\ntimezone = 'Europe/Berln'\n")
    assert err.message == "unknown time zone 'Europe/Berln'"
    assert err.field == "schedule.timezone"
    assert err.hint is not None and err.hint.startswith("Did you mean 'Europe/Berlin'?")


def test_unwritable_folder_names_key_and_file(tmp_path: Path) -> None:
    # a folder under a regular file can never be created, whoever runs the test
    blocker = write(tmp_path / "blocker", "")
    path = write(tmp_path / "digestbot.toml", f"[digest]\nfeeds_dir = '{blocker / 'feeds'}'\n")
    cfg = load_config(path, env={})
    with pytest.raises(ConfigError) as info:
        cfg.writable_dir("digest.feeds_dir")
    err = info.value
    assert str(err) == (
        f"{path}: digest.feeds_dir: cannot create folder {blocker / 'feeds'}: Not a directory"
    )
    assert err.hint == "Point digest.feeds_dir at a folder this user can write, or create it."
    ok = default_config(digest__feeds_dir=str(tmp_path / "a" / "b"))
    assert ok.writable_dir("digest.feeds_dir").is_dir()


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    err = _error(tmp_path, "[smtp\nhost = 1\n")
    assert err.message.startswith("not valid TOML:")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml", env={})


def test_secrets_never_from_the_config_file(tmp_path: Path) -> None:
    err = _error(tmp_path, "[smtp]\npassword = 'hunter2'\n")
    assert err.field == "smtp.password"
    assert err.message == "secrets are not read from the config file"
    assert err.hint is not None and "DIGESTBOT_SMTP_PASSWORD" in err.hint


def test_secrets_from_env_or_owner_only_file(tmp_path: Path) -> None:
    cfg = load_config(None, env={"DIGESTBOT_SMTP_PASSWORD": "pw", "DIGESTBOT_SECRET_KEY": "k"})
    assert cfg["smtp.password"] == "pw" and cfg["web.secret_key"] == "k"
    secret = write(tmp_path / "pw", "from-file\n")
    secret.chmod(0o644)
    env = {"DIGESTBOT_SMTP_PASSWORD_FILE": str(secret)}
    with pytest.raises(ConfigError) as info:
        load_config(None, env=env)
    assert info.value.hint == f"Run: chmod 600 {secret}"
    assert "readable by others (mode 644)" in info.value.message
    secret.chmod(0o600)
    assert load_config(None, env=env)["smtp.password"] == "from-file"


def test_config_command_masks_secrets_and_shows_sources(runner: CliRunner) -> None:
    Path("digestbot.toml").write_text("[smtp]\nhost = 'mail.example'\n")
    result = runner.invoke(
        main, ["config"], env={"DIGESTBOT_SMTP_PASSWORD": "hunter2", "DIGESTBOT_WEB_PORT": "9000"}
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"# file: {Path.cwd() / 'digestbot.toml'}"
    assert f'smtp.host = "mail.example"  # from {Path.cwd() / "digestbot.toml"}' in lines
    assert "smtp.password = ********  # from $DIGESTBOT_SMTP_PASSWORD" in lines
    assert "web.port = 9000  # from $DIGESTBOT_WEB_PORT" in lines
    assert "smtp.port = 25" in lines
    assert "hunter2" not in result.output
    as_json = runner.invoke(main, ["config", "--json"], env={"DIGESTBOT_SMTP_PASSWORD": "hunter2"})
    data = json.loads(as_json.output)
    assert data["settings"]["smtp.password"] == "********"
    assert "hunter2" not in as_json.output


def test_config_command_error_is_one_line_and_a_hint(runner: CliRunner) -> None:
    Path("digestbot.toml").write_text("[schedule]\ntimezone = 'Mars/Olympus'\n")
    result = runner.invoke(main, ["config"])
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        f"Error: {Path.cwd() / 'digestbot.toml'}: schedule.timezone: "
        "unknown time zone 'Mars/Olympus'"
    )
    assert result.output.splitlines()[1].startswith("Hint: ")


def test_example_file_is_current_covers_every_setting_and_loads(runner: CliRunner) -> None:
    shipped = (ROOT / "digestbot.example.toml").read_text(encoding="utf-8")
    # regenerate with: digestbot config --example > digestbot.example.toml
    assert shipped == example_toml()
    result = runner.invoke(main, ["config", "--example"])
    assert result.output == shipped
    data = tomllib.loads(shipped)
    for s in SETTINGS:
        if s.secret:
            assert f"# {s.key}: never in this file" in shipped
            assert s.key not in data[s.section]
        else:
            assert data[s.section][s.key] == s.default, s.name
    assert load_config(ROOT / "digestbot.example.toml", env={}).values == default_config().values


def test_help_settings_lists_every_setting(runner: CliRunner) -> None:
    result = runner.invoke(main, ["config", "--help-settings"])
    assert result.exit_code == 0
    for s in SETTINGS:
        assert f"{s.name} ({s.type}, default " in result.output


def test_a_password_inside_the_store_url_is_masked() -> None:
    from digestbot.config import default_config, mask_url_password

    url = "postgresql+psycopg://digestbot:hunter2@db.example.org:5432/digestbot"
    masked = default_config(store__db=url).masked()["store.db"]
    assert masked == "postgresql+psycopg://digestbot:********@db.example.org:5432/digestbot"
    assert mask_url_password("postgresql://db.example.org/x") == "postgresql://db.example.org/x"
    assert mask_url_password("/var/lib/digestbot/digestbot.db") == (
        "/var/lib/digestbot/digestbot.db"
    )
