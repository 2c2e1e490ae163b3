"""Helpers shared by the pipeline, schedule and demo tests."""

from __future__ import annotations

import mailbox
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from digestbot.store import Store
from digestbot.store.subscribers import add_subscriber

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
DIGESTBOT = str(Path(sys.executable).with_name("digestbot"))


def subprocess_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The environment of a real `digestbot` process: nothing of the caller's DIGESTBOT_*,
    a store and every folder inside tmp_path, then ``settings`` (DIGESTBOT_... = value)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTBOT_") and k != "CI"}
    env.update(
        DIGESTBOT_DB=str(tmp_path / "d.db"),
        DIGESTBOT_SECRET_KEY="test-secret-key-not-for-production",
        DIGESTBOT_INGEST_INBOX=str(tmp_path / "inbox"),
        DIGESTBOT_DIGEST_FEEDS_DIR=str(tmp_path / "feeds"),
        DIGESTBOT_DELIVERY_MAILDIR=str(tmp_path / "maildir"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
    )
    env.update(settings)
    return env


@contextmanager
def digestbot_process(
    args: list[str], tmp_path: Path, env: dict[str, str], **popen: Any
) -> Iterator[subprocess.Popen[str]]:
    """`digestbot ARGS` in its own process group, killed with all it started if the test
    leaves it running (a failed assertion must not leave workers behind)."""
    proc = subprocess.Popen(
        [DIGESTBOT, *args],
        cwd=tmp_path,
        env=env,
        text=True,
        start_new_session=True,
        **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen},
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def live_in_group(group: int, within: float = 5.0) -> list[str]:
    """The processes of process group ``group`` still alive after up to ``within`` seconds
    (their /proc stat lines); [] once every one has exited. An exited process whose parent
    is gone waits for init to reap it (a zombie): it runs nothing and holds nothing, so it
    does not count."""
    deadline = time.monotonic() + within
    while True:
        alive = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # it exited meanwhile
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == group and fields[0] != "Z":
                alive.append(stat.strip())
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def stop_with_sigterm(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str, float]:
    """SIGTERM, as `systemctl stop` sends it: the process's rest of stdout and stderr, and
    how many seconds it took to exit."""
    sent_at = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=timeout)
    return out or "", err or "", time.monotonic() - sent_at


def fill_inbox(inbox: Path, count: int | None = None) -> list[Path]:
    inbox.mkdir(parents=True, exist_ok=True)
    seeds = sorted(SEEDS.iterdir())[:count]
    for path in seeds:
        shutil.copy2(path, inbox / path.name)
    return seeds


def add(store: Store, email: str, **fields: Any) -> int:
    fields.setdefault("keywords", ["diffusion", "language model"])
    with store.session() as session:
        return add_subscriber(session, email=email, **fields).id


def maildir_recipients(folder: Path) -> Counter[str]:
    """How many messages each address got in a Maildir."""
    if not folder.exists():
        return Counter()
    box = mailbox.Maildir(folder, factory=None, create=False)
    return Counter(str(message["To"]).rsplit("<", 1)[-1].rstrip(">") for message in box)
