"""The README's operator sections, walked from a fresh state folder as an operator would:
install (environment file, `db upgrade`), the cron line, growing to PostgreSQL with
`db copy`, the web unit's ExecStartPre and ExecStart, and monitoring. Real processes (the
installed `digestbot` script), the real deploy/ files with their paths moved into a
temporary folder, an SMTP server on 127.0.0.1, PostgreSQL on 127.0.0.1.

What cannot be done here: useradd, systemctl and nginx itself (test_deploy.py checks the
units with systemd-analyze and the nginx example with nginx -t)."""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from .conftest import SEEDS
from .smtp_sink import SmtpSink, free_port

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
INSTALLED = "/opt/digestbot/.venv/bin/digestbot"
HERE = str(Path(sys.executable).with_name("digestbot"))
NOW = "2026-11-22T12:00:00Z"


class Host:
    """/etc/digestbot and /var/lib/digestbot moved under a temporary root."""

    def __init__(self, root: Path, sink: SmtpSink) -> None:
        self.etc = root / "etc" / "digestbot"
        self.state = root / "var" / "lib" / "digestbot"
        self.etc.mkdir(parents=True)
        self.state.mkdir(parents=True)  # useradd --create-home makes it
        self.sink = sink
        # the README's install steps: the example configuration and environment file
        shutil.copy(DEPLOY.parent / "digestbot.example.toml", self.etc / "digestbot.toml")
        env = self.moved((DEPLOY / "digestbot.env.example").read_text())
        env = env.replace("DIGESTBOT_SMTP_PORT=25", f"DIGESTBOT_SMTP_PORT={sink.port}")
        # the operator's edits ($EDITOR digestbot.env): a real key, no password for this relay
        env = env.replace("DIGESTBOT_SMTP_PASSWORD=change-me\n", "")
        env = env.replace(
            "DIGESTBOT_SECRET_KEY=change-me-to-the-output-of-python3-c-import-secrets-print-"
            "secrets-token_urlsafe-32",
            f"DIGESTBOT_SECRET_KEY={secrets.token_urlsafe(32)}",
        )
        self.env_file = self.etc / "digestbot.env"
        self.env_file.write_text(env)
        self.env_file.chmod(0o640)

    def moved(self, text: str) -> str:
        return (
            text.replace("/etc/digestbot", str(self.etc))
            .replace("/var/lib/digestbot", str(self.state))
            .replace(INSTALLED, HERE)
        )

    def environment(self, **extra: str) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.state)}
        for line in self.env_file.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                key, _, value = line.partition("=")
                env[key] = value
        env.update(extra)
        return env

    def digestbot(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [HERE, *args],
            cwd=self.state,
            env=self.environment(**extra),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def shell(self, command: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.state)}
        return subprocess.run(
            ["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=120
        )

    def unit_line(self, unit: str, key: str) -> list[str]:
        for line in (DEPLOY / unit).read_text().splitlines():
            if line.startswith(key + "="):
                return shlex.split(self.moved(line.split("=", 1)[1]))
        raise AssertionError(f"{unit} has no {key}")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_operator_sections_from_a_fresh_install(
    tmp_path: Path, smtp_sink: SmtpSink, pg_url: str
) -> None:
    host = Host(tmp_path, smtp_sink)

    # Install: before `db upgrade` every other command refuses the missing store
    listed = host.digestbot("subscribers", "list")
    assert listed.returncode == 1 and "Hint:" in listed.stderr
    assert not (host.state / "digestbot.db").exists()
    upgraded = host.shell(
        f"cd {host.state} && set -a && . {host.env_file} && set +a && {HERE} db upgrade"
    )
    assert upgraded.returncode == 0 and "Upgraded schema from empty" in upgraded.stdout
    assert (host.state / "digestbot.db").is_file()

    # readers and listings
    added = host.digestbot(
        "subscribers", "add", "ada@example.org", "-k", "diffusion, language model",
        "--send-hour", "0", "--now", "2026-11-20T00:00:00Z",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    (host.state / "inbox").mkdir()
    for seed in sorted(SEEDS.iterdir()):
        shutil.copy(seed, host.state / "inbox" / seed.name)

    # cron: the crontab's own command line, with --now so the moment is fixed
    cron = next(
        line
        for line in (DEPLOY / "crontab").read_text().splitlines()
        if line.startswith("0 * * * *")
    )
    command = host.moved(cron.split(None, 5)[5]) + f" --now {NOW}"
    prom = tmp_path / "textfile" / "digestbot.prom"
    prom.parent.mkdir()
    with host.env_file.open("a") as env:
        env.write(f"DIGESTBOT_LOG_METRICS_TEXTFILE={prom}\n")
    ran = host.shell(command)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "send:    1 sent" in ran.stdout  # -q prints the summary of a run that did work
    assert smtp_sink.recipients() == {"ada@example.org": 1}
    assert (host.state / "inbox" / "processed").is_dir()
    again = host.shell(command)
    assert (again.returncode, again.stdout) == (0, "")  # nothing to do: cron stays quiet

    # Monitoring without the web front: the textfile
    textfile = _metrics(prom.read_text())
    assert textfile[("digestbot_last_run_result", (("result", "nothing"),))] == 1

    # Growing to PostgreSQL: upgrade the new store, copy, point DIGESTBOT_DB at it
    assert host.digestbot("db", "upgrade", "--db", pg_url).returncode == 0
    copied = host.digestbot("db", "copy", str(host.state / "digestbot.db"), pg_url)
    assert copied.returncode == 0, copied.stderr
    assert copied.stdout.splitlines()[-1].endswith("every count matches.")
    env = host.env_file.read_text().replace(
        f"DIGESTBOT_DB={host.state}/digestbot.db", f"DIGESTBOT_DB={pg_url}"
    )
    host.env_file.write_text(env)
    on_pg = host.shell(command)
    assert (on_pg.returncode, on_pg.stdout) == (0, "")  # nobody is sent anything twice
    assert smtp_sink.recipients() == {"ada@example.org": 1}

    # The web front as a service: ExecStartPre, then ExecStart, on a free port
    port = free_port()
    pre = host.unit_line("digestbot-web.service", "ExecStartPre")
    start = host.unit_line("digestbot-web.service", "ExecStart")
    start[start.index("--port") + 1] = str(port)
    assert (
        subprocess.run(
            pre, cwd=host.state, env=host.environment(), capture_output=True, timeout=120
        ).returncode
        == 0
    )
    server = subprocess.Popen(
        start, cwd=host.state, env=host.environment(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        status = 0
        while time.monotonic() < deadline:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                assert server.poll() is None, server.communicate()[1]
                time.sleep(0.2)
        assert status == 200 and '"database":"ok"' in body.replace(" ", "")
        status, text = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        scraped = _metrics(text)
        assert scraped[("digestbot_subscribers", (("status", "active"),))] == 1
        assert scraped[("digestbot_digests", (("state", "sent"),))] == 1
        assert scraped[("digestbot_last_run_result", (("result", "nothing"),))] == 1
        # a second `serve` on the same port: an Error and a Hint, exit 1
        twice = host.digestbot(*start[1:])
        assert twice.returncode == 1 and "already in use" in twice.stderr
        assert "Hint:" in twice.stderr
    finally:
        server.send_signal(signal.SIGTERM)  # KillSignal=SIGTERM
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    # uvicorn shuts down gracefully, then ends by the signal it got: systemd counts an end
    # by SIGTERM as a clean stop
    assert server.returncode in (0, -signal.SIGTERM), server.communicate()[1]
    assert "Finished server process" in server.communicate()[1]
