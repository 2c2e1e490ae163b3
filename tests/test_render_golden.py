"""Golden files for a fixed reader: the HTML, the text, the message and the feeds.

Regenerate after an intended change with ``pytest tests/test_render_golden.py
--regen-golden`` (or ``DIGESTBOT_REGEN_GOLDEN=1``) and review the diff. Signed links carry
a timestamp and the MIME boundary hashes the text, so both are normalised before comparing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from digestbot.config import default_config
from digestbot.render import render_digest, subscriber_feeds

from .test_render_helpers import NOW, SECRET, entries, reader

GOLDEN = Path(__file__).resolve().parent / "golden"
CONFIG = default_config(web__secret_key=SECRET, digest__from_address="papers@lab.example")

_TOKEN = re.compile(r"(/(?:unsubscribe|preferences|feedback|digest)/|unsubscribe%20)[\w.-]+")
_BOUNDARY = re.compile(r"=_[0-9a-f]{28}_*")


def normalise(text: str) -> str:
    text = _TOKEN.sub(lambda m: m.group(1) + "TOKEN", text)
    return _BOUNDARY.sub("=_BOUNDARY", text)


@pytest.fixture
def compare(request: pytest.FixtureRequest):
    regen = request.config.getoption("--regen-golden") or (
        os.environ.get("DIGESTBOT_REGEN_GOLDEN") == "1"
    )

    def check(name: str, actual: str) -> None:
        _compare(name, actual, regen)

    return check


def _compare(name: str, actual: str, regen: bool) -> None:
    path = GOLDEN / name
    actual = normalise(actual)
    if regen:
        path.parent.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"{name} differs; --regen-golden regenerates it"


@pytest.fixture(scope="module")
def rendered():
    result = render_digest(reader(), entries(3), period="2026-11-23/daily", config=CONFIG, now=NOW)
    assert result is not None
    return result


def test_golden_html(rendered, compare) -> None:
    compare("digest.html", rendered.html)


def test_golden_text(rendered, compare) -> None:
    compare("digest.txt", rendered.text)


def test_golden_message(rendered, compare) -> None:
    # headers and MIME structure; the bodies are the two goldens above (quoted-printable
    # soft breaks would split the signed links that need normalising)
    raw = rendered.as_bytes().decode("ascii")
    head = raw.split("\n\n", 1)[0]
    parts = [chunk.split("\n\n", 1)[0] for chunk in re.split(r"\n--=_\w+\n", raw)[1:]]
    compare("digest.eml", "\n\n".join([head, *parts]) + "\n")


def test_golden_feeds(compare) -> None:
    rss, atom = subscriber_feeds(
        reader(), [(p, pick, NOW) for p, pick in entries(3)], config=CONFIG
    )
    compare("feed.rss", rss.decode("utf-8"))
    compare("feed.atom", atom.decode("utf-8"))
