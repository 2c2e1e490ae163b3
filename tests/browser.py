"""Debian's Chromium for browser tests: never a downloaded browser, no outside network."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google's hosts, which
# this machine's closed network refuses.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium(force_dark: bool = False) -> Iterator[Any]:
    """A launched headless Chromium (a Playwright Browser); screenshots go to ARTIFACTS.

    ``force_dark``: Chromium's auto dark mode, which darkens a page that does not claim a
    dark scheme of its own, as the mail apps' dark modes do."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS + (["--blink-settings=forceDarkModeEnabled=true"] if force_dark else []),
        )
        try:
            yield browser
        finally:
            browser.close()
