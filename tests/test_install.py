"""A regular install, as an operator makes it: the wheel built from this checkout, installed
with its pinned dependencies into a fresh virtualenv outside the checkout, used from another
folder. The editable install the other tests use cannot show a file missing from the wheel."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECRET = "install-test-secret-key-0123456789"
pytestmark = pytest.mark.slow


def _installer_env() -> dict[str, str]:
    """pip as an operator runs it: on the real clock (digestbot itself runs on the test's)."""
    drop = ("TESTS_CLOCK_AHEAD_DAYS", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PIP_")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    result = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{cmd} exited {result.returncode}:\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The bin/ folder of a fresh virtualenv holding the wheel and the locked dependencies."""
    base = tmp_path_factory.mktemp("install")
    env = _installer_env()
    wheels = base / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
        base,
        env,
    )
    (wheel,) = wheels.glob("digestbot-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in (
        "digestbot/templates/email/_email.css",
        "digestbot/templates/web/base.html",
        "digestbot/py.typed",
    ):
        assert shipped in names, f"{shipped} is not in {wheel.name}"
    assert sum(n.startswith("digestbot/seeds/") for n in names) == 5
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], base, env)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    _run([*pip, "-c", str(ROOT / "requirements.lock"), str(wheel)], base, env)
    yield venv / "bin"


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working folder with no checkout in sight (no ./seeds, no ./templates)."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def _env(**extra: str) -> dict[str, str]:
    """No DIGESTBOT_* from outside, and no path to a checkout: only the installed package
    may be importable (a year-ahead pass keeps its clock hook)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTBOT_")}
    paths = env.pop("PYTHONPATH", "").split(os.pathsep)
    kept = [p for p in paths if p and not (Path(p) / "digestbot").exists()]
    if kept:
        env["PYTHONPATH"] = os.pathsep.join(kept)
    env.update(extra)
    return env


def _maildir_messages(folder: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((folder / "new").iterdir())]


def test_the_wheel_runs_demo_preview_and_run(installed: Path, elsewhere: Path) -> None:
    digestbot = str(installed / "digestbot")
    env = _env(DIGESTBOT_SECRET_KEY=SECRET)
    out = _run([digestbot, "demo"], elsewhere, env)
    assert "Ingested 5 seed files" in out
    demo = elsewhere / "demo"
    messages = _maildir_messages(demo / "maildir")
    assert len(messages) == 3
    for raw in messages:
        msg = message_from_bytes(raw, policy=policy.default)
        assert not any(part.defects for part in msg.walk())

    db = str(demo / "digestbot.db")
    out = _run(
        [digestbot, "preview", "--db", db, "--subscriber", "ada@example.org", "--out", "pv"],
        elsewhere,
        env,
    )
    for name in ("digest.html", "digest.txt", "digest.eml", "feed.rss", "feed.atom"):
        assert (elsewhere / "pv" / name).stat().st_size > 0, name

    # a store of its own: one dump in the inbox, one reader due at 08:00 UTC
    run_dir = elsewhere / "own"
    (run_dir / "inbox").mkdir(parents=True)
    seed = next((installed.parent / "lib").glob("python3*/site-packages/digestbot/seeds/000_*"))
    (run_dir / "inbox" / seed.name).write_bytes(seed.read_bytes())
    fresh = ["--db", str(run_dir / "store.db")]
    _run(
        [digestbot, "subscribers", "add", "kim@example.org", *fresh, "-k", "language model"]
        + ["--tz", "UTC", "--send-hour", "8", "--now", "2026-11-20T06:00:00Z"],
        run_dir,
        env,
    )
    out = _run([digestbot, "run", *fresh, "--now", "2026-11-21T09:00:00Z"], run_dir, env)
    assert "send:    1 sent" in out, out
    assert len(_maildir_messages(run_dir / "maildir")) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_wheel_serves_the_web_front(installed: Path, elsewhere: Path) -> None:
    port = _free_port()
    env = _env(DIGESTBOT_SECRET_KEY=SECRET)
    db = str(elsewhere / "web.db")
    _run([str(installed / "digestbot"), "db", "upgrade", "--db", db], elsewhere, env)
    cmd = [str(installed / "digestbot"), "serve", "--db", db, "--host", "127.0.0.1"]
    server = subprocess.Popen(
        [*cmd, "--port", str(port)],
        cwd=elsewhere,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        statuses = {}
        deadline = time.monotonic() + 60
        for path in ("/", "/healthz"):
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                        statuses[path] = r.status
                        body = r.read()
                    break
                except OSError:
                    assert server.poll() is None, server.communicate()[0]
                    assert time.monotonic() < deadline, f"no answer on {path}"
                    time.sleep(0.2)
            if path == "/healthz":
                assert b'"database": "ok"' in body or b'"database":"ok"' in body
        assert statuses == {"/": 200, "/healthz": 200}
    finally:
        server.terminate()
        server.wait(timeout=20)
