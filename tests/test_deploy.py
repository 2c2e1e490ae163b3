"""The deploy/ files: systemd units that systemd-analyze accepts, a crontab line, an
environment file whose every variable is a known setting."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from digestbot.config import SETTINGS, load_config

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNITS = (
    "digestbot.service",
    "digestbot-run.service",
    "digestbot-run.timer",
    "digestbot-web.service",
)
INSTALLED = "/opt/digestbot/.venv/bin/digestbot"


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        # .ci/run installs systemd, so in CI a missing tool is a broken machine, not a skip
        why = "systemd-analyze is not installed (bash .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return found


def _units_for_here(tmp_path: Path) -> list[Path]:
    """The units with ExecStart pointed at this virtualenv, which verify needs to exist."""
    here = str(Path(sys.executable).with_name("digestbot"))
    assert Path(here).exists(), "the digestbot script is not installed in this virtualenv"
    out = []
    for name in UNITS:
        text = (DEPLOY / name).read_text(encoding="utf-8")
        (tmp_path / name).write_text(text.replace(INSTALLED, here), encoding="utf-8")
        out.append(tmp_path / name)
    return out


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    units = _units_for_here(tmp_path)
    result = subprocess.run(
        [_systemd_analyze(), "verify", "--man=no", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"SYSTEMD_LOG_LEVEL": "notice", "PATH": "/usr/bin:/bin"},
    )
    # verify exits 0 on unknown keys and only warns, so any line about our files fails too
    ours = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if any(name in line for name in UNITS)
    ]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr


def test_verify_catches_a_typo(tmp_path: Path) -> None:
    """The check above is not vacuous: a misspelt hardening key is reported."""
    units = _units_for_here(tmp_path)
    broken = units[0]
    broken.write_text(broken.read_text().replace("NoNewPrivileges=", "NoNewPrivilegs="))
    result = subprocess.run(
        [_systemd_analyze(), "verify", "--man=no", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Unknown key 'NoNewPrivilegs'" in result.stderr


@pytest.mark.parametrize(
    "name", ["digestbot.service", "digestbot-run.service", "digestbot-web.service"]
)
def test_services_are_hardened(name: str) -> None:
    text = (DEPLOY / name).read_text()
    for line in (
        "User=digestbot",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "StateDirectory=digestbot",
        "EnvironmentFile=/etc/digestbot/digestbot.env",
        "PrivateTmp=yes",
        "ProtectHome=yes",
    ):
        assert line in text.splitlines(), f"{name} lacks {line}"


def test_oneshot_treats_nothing_to_do_as_success() -> None:
    from digestbot.cli import EXIT_NOTHING

    lines = (DEPLOY / "digestbot-run.service").read_text().splitlines()
    assert "Type=oneshot" in lines
    assert f"SuccessExitStatus={EXIT_NOTHING}" in lines
    assert f"ExecStart={INSTALLED} run" in lines
    timer = (DEPLOY / "digestbot-run.timer").read_text().splitlines()
    assert "OnCalendar=hourly" in timer and "Persistent=yes" in timer


def test_daemon_unit_runs_schedule() -> None:
    lines = (DEPLOY / "digestbot.service").read_text().splitlines()
    assert f"ExecStart={INSTALLED} schedule" in lines
    assert "KillSignal=SIGTERM" in lines


def test_web_unit_migrates_once_before_serving_on_loopback() -> None:
    lines = (DEPLOY / "digestbot-web.service").read_text().splitlines()
    assert f"ExecStartPre={INSTALLED} db upgrade" in lines
    assert f"ExecStart={INSTALLED} serve --host 127.0.0.1 --port 8080" in lines
    assert "CapabilityBoundingSet=" in lines and "Restart=on-failure" in lines


def test_nginx_example_proxies_to_the_web_unit_with_tls_headers() -> None:
    conf = (DEPLOY / "nginx-digestbot.conf").read_text()
    unit = (DEPLOY / "digestbot-web.service").read_text()
    port = re.search(r"serve --host 127\.0\.0\.1 --port (\d+)", unit)
    assert port is not None
    assert f"proxy_pass http://127.0.0.1:{port.group(1)};" in conf
    for line in (
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        'add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always;',
        "ssl_protocols TLSv1.2 TLSv1.3;",
        "access_log off;",
        "return 301 https://$host$request_uri;",
    ):
        assert line in conf, line
    # nginx stops bodies the app would refuse anyway
    from digestbot.config import default_config

    assert f"client_max_body_size {default_config()['web.max_body_kb']}k;" in conf


def test_nginx_example_passes_nginx_t(tmp_path: Path) -> None:
    """The example, with a throwaway certificate and local ports, is accepted by nginx -t."""
    import trustme

    if shutil.which("nginx") is None:
        why = "nginx is not installed (bash .ci/run installs nginx-light)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)

    ca = trustme.CA()
    cert = ca.issue_cert("papers.example.org")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "both.pem"))
    site = (DEPLOY / "nginx-digestbot.conf").read_text()
    site = re.sub(r"ssl_certificate(_key)? [^;]+;", "", site)
    site = site.replace(
        "ssl_protocols",
        f"ssl_certificate {tmp_path}/both.pem;\n"
        f"    ssl_certificate_key {tmp_path}/both.pem;\n    ssl_protocols",
    )
    site = site.replace("listen 80;", "listen 127.0.0.1:18080;").replace(
        "listen 443 ssl http2;", "listen 127.0.0.1:18443 ssl http2;"
    )
    site = "\n".join(line for line in site.splitlines() if "[::]" not in line)
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{ include {tmp_path}/site.conf; }}\n"
    )
    result = subprocess.run(
        ["nginx", "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def test_readme_install_creates_the_home_folder() -> None:
    readme = (DEPLOY.parent / "README.md").read_text()
    useradd = [line for line in readme.splitlines() if line.startswith("useradd ")]
    assert useradd and all("--create-home" in line or " -m " in line for line in useradd)


def test_crontab_line_is_hourly_and_runs_digestbot() -> None:
    jobs = [
        line
        for line in (DEPLOY / "crontab").read_text().splitlines()
        if line.strip() and not line.startswith("#") and not re.match(r"^[A-Z_]+=", line)
    ]
    assert len(jobs) == 1
    fields = jobs[0].split(None, 5)
    assert fields[:5] == ["0", "*", "*", "*", "*"]
    words = shlex.split(fields[5])
    assert f"{INSTALLED}" in words and "run" in words
    assert words[words.index("run") - 1] == "-q"


def test_environment_example_uses_only_known_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    known = {"DIGESTBOT_CONFIG"} | {v for s in SETTINGS for v in (s.env, *s.aliases)}
    env = {}
    for line in (DEPLOY / "digestbot.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert key in known, f"{key} is not a digestbot setting"
            env[key] = value
    env.pop("DIGESTBOT_CONFIG")
    cfg = load_config(None, env={**env, "XDG_CONFIG_HOME": "/nonexistent"})
    assert cfg["delivery.transport"] == "smtp"
    assert cfg.sources["smtp.password"] == "$DIGESTBOT_SMTP_PASSWORD"
