"""The digest as mail clients and spam filters judge it, with the real tools:
@jsx-email/doiuse-email (caniemail's data; `make node_modules` installs it from npm) and
Debian's SpamAssassin (`spamassassin -t -L`: local rules only, nothing sent)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from digestbot.config import default_config
from digestbot.render import render_digest

from .test_render_helpers import NOW, SECRET, reader
from .test_render_reader import picks

ROOT = Path(__file__).resolve().parent.parent
CHECKER = ROOT / "tests" / "node" / "doiuse.cjs"
CONFIG = default_config(web__secret_key=SECRET, digest__from_address="papers@lab.example")
CLIENTS = ("gmail.*", "apple-mail.*", "yahoo.*")


def digest(n: int = 20, kind: str = "plain", **settings: object) -> object:
    config = CONFIG.replace(**settings) if settings else CONFIG
    rendered = render_digest(
        reader(max_items=100), picks(n, kind), period="2026-11-23/daily", config=config, now=NOW
    )
    assert rendered is not None
    return rendered


def doiuse(html: str, tmp_path: Path) -> dict[str, list[str]]:
    node = shutil.which("node")
    assert node, "node is needed for the email client checks (Debian: apt-get install nodejs)"
    assert (ROOT / "node_modules" / "@jsx-email" / "doiuse-email").is_dir(), (
        "run `make node_modules` (npm ci) to install @jsx-email/doiuse-email"
    )
    page = tmp_path / "digest.html"
    page.write_text(html, encoding="utf-8")
    out = subprocess.run(
        [node, str(CHECKER), str(page), *CLIENTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, list[str]] = json.loads(out.stdout)
    return result


@pytest.mark.parametrize("kind", ["plain", "hostile"])
def test_doiuse_email_finds_nothing_unsupported_in_gmail_apple_mail_yahoo(
    kind: str, tmp_path: Path
) -> None:
    result = doiuse(digest(20, kind).html, tmp_path)
    assert result["errors"] == [], result["errors"]
    # the checker did look: it has notes on what these clients support only in part
    assert result["warnings"]


def test_doiuse_email_on_the_nothing_new_note(tmp_path: Path) -> None:
    rendered = render_digest(
        reader(),
        [],
        period="2026-11-23/daily",
        config=CONFIG.replace(digest__send_empty=True),
        now=NOW,
    )
    assert rendered is not None
    assert doiuse(rendered.html, tmp_path)["errors"] == []


# Points that depend on how the message travels, not on what the sender wrote: a message
# fed to `spamassassin -t` straight from the renderer has no Received headers.
TRANSPORT_RULES = {"NO_RECEIVED", "NO_RELAYS"}
_RULE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s", re.M)


def spamassassin(message: bytes) -> dict[str, float]:
    binary = shutil.which("spamassassin")
    assert binary, "SpamAssassin is needed (Debian: apt-get install spamassassin)"
    out = subprocess.run(
        [binary, "-t", "-L"], input=message, capture_output=True, timeout=300, check=False
    )
    report = out.stdout.decode("utf-8", "replace")
    assert "Content analysis details" in report, out.stderr.decode("utf-8", "replace")
    table = report.split("Content analysis details", 1)[1]
    return {name: float(points) for points, name in _RULE.findall(table)}


@pytest.mark.slow
def test_spamassassin_scores_the_digest_zero_or_below() -> None:
    rules = spamassassin(digest(20).as_bytes())
    assert "HTML_MESSAGE" in rules  # it read the HTML part
    ours = {name: points for name, points in rules.items() if name not in TRANSPORT_RULES}
    assert "HTML_FONT_LOW_CONTRAST" not in ours  # the hidden preheader is gone
    assert sum(ours.values()) <= 0, ours
    assert all(points <= 0 for points in ours.values()), ours
