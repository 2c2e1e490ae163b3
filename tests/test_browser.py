"""A real reader in a real browser: headless Chromium (Debian's, via Playwright) against a
`digestbot serve` process on 127.0.0.1, with confirmation mail read from a real SMTP sink.

Screenshots of every page land in test-artifacts/ for people to look at.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from digestbot.store import Subscriber, open_store

from .browser import ARTIFACTS, chromium
from .smtp_sink import SmtpSink, free_port
from .test_web_support import LINK, add_papers

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def server(tmp_path: Path, smtp_sink: SmtpSink) -> Iterator[tuple[str, str]]:
    """`digestbot serve` in a subprocess; yields its base URL and database path."""
    db = str(tmp_path / "web.db")
    store = open_store(db)
    add_papers(store)
    store.dispose()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTBOT_")}
    env.update(
        DIGESTBOT_SECRET_KEY="browser-test-secret-key-0123456789",
        DIGESTBOT_DIGEST_SITE_URL=base,
        DIGESTBOT_DELIVERY_TRANSPORT="smtp",
        DIGESTBOT_SMTP_HOST=smtp_sink.host,
        DIGESTBOT_SMTP_PORT=str(smtp_sink.port),
        # the browser follows links to this loopback server: a test setup on one machine
        DIGESTBOT_SMTP_ALLOW_TEST_SETTINGS="true",
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
    )
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "digestbot", "serve", "--db", db, "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((tmp_path / "serve.log").read_text())
            time.sleep(0.2)
        yield base, db
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def _wait_for_mail(sink: SmtpSink, count: int) -> None:
    deadline = time.monotonic() + 15
    while len(sink.received) < count:
        assert time.monotonic() < deadline, "no confirmation email arrived"
        time.sleep(0.1)


def _subscriber(db: str, email: str) -> Subscriber:
    store = open_store(db)
    try:
        with store.session() as s:
            found = s.scalar(select(Subscriber).where(Subscriber.email_key == email))
            assert found is not None
            return found
    finally:
        store.dispose()


def test_subscribe_confirm_edit_unsubscribe(server: tuple[str, str], smtp_sink: SmtpSink) -> None:
    from playwright.sync_api import expect

    base, db = server
    problems: list[str] = []
    with chromium() as browser:
        context = browser.new_context(
            timezone_id="Europe/Berlin", viewport={"width": 1200, "height": 900}
        )
        page = context.new_page()
        # a CSP violation or script error shows up in the console
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))

        page.goto(base + "/")
        heading = page.get_by_role("heading", name="Get trending papers in your inbox")
        expect(heading).to_be_visible()
        expect(page.locator(".papers .paper")).to_have_count(4)
        # pre-filled from the browser's zone by the page's script
        expect(page.locator("#timezone")).to_have_value("Europe/Berlin")
        expect(page.locator("[data-weekly]")).to_be_hidden()
        page.screenshot(path=ARTIFACTS / "web-1-subscribe.png", full_page=True)

        page.fill("#email", "reader@example.org")
        page.fill("#keywords", "diffusion models, speech")
        page.select_option("#send_hour", "7")
        page.get_by_role("button", name="Subscribe").click()
        expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
        page.screenshot(path=ARTIFACTS / "web-2-check-inbox.png", full_page=True)

        _wait_for_mail(smtp_sink, 1)
        assert smtp_sink.received[0].rcpt_tos == ["reader@example.org"]
        text = smtp_sink.received[0].message.get_body(("plain",)).get_content()
        confirm = next(u for u in _links(text, base) if "/confirm/" in u)
        html = smtp_sink.received[0].message.get_body(("html",)).get_content()
        # the email is shown in a blank page of its own: it is not under the site's CSP
        mail = context.new_page()
        mail.set_content(html)
        mail.screenshot(path=ARTIFACTS / "web-3-confirmation-email.png", full_page=True)
        mail.close()
        sub = _subscriber(db, "reader@example.org")
        assert (sub.status, sub.timezone, sub.send_hour) == ("pending", "Europe/Berlin", 7)

        page.goto(confirm)
        page.screenshot(path=ARTIFACTS / "web-4-confirm.png", full_page=True)
        page.get_by_role("button", name="Confirm my subscription").click()
        expect(page.get_by_role("heading", name="Your preferences")).to_be_visible()
        expect(page.get_by_text("You are subscribed.")).to_be_visible()
        assert _subscriber(db, "reader@example.org").status == "active"
        expect(page.locator(".feeds")).to_contain_text(f"{base}/feeds/{sub.feed_token}.rss")
        page.screenshot(path=ARTIFACTS / "web-5-preferences.png", full_page=True)

        page.fill("#keywords", "diffusion models, speech, <script>alert(1)</script>")
        page.select_option("#frequency", "weekly")
        expect(page.locator("[data-weekly]")).to_be_visible()
        page.select_option("#weekday", "2")
        page.get_by_role("button", name="Save preferences").click()
        expect(page.get_by_text("Your preferences are saved.")).to_be_visible()
        expect(page.locator("#keywords")).to_have_value(
            "diffusion models, speech, <script>alert(1)</script>"
        )
        page.screenshot(path=ARTIFACTS / "web-6-saved.png", full_page=True)
        sub = _subscriber(db, "reader@example.org")
        assert sub.keywords == ["diffusion models", "speech", "<script>alert(1)</script>"]
        assert (sub.frequency, sub.weekday) == ("weekly", 2)

        page.get_by_role("button", name="Unsubscribe").click()
        expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
        page.screenshot(path=ARTIFACTS / "web-7-unsubscribed.png", full_page=True)
        assert _subscriber(db, "reader@example.org").status == "unsubscribed"

        page.goto(confirm)
        expect(page.get_by_text("Error 410")).to_be_visible()
        page.goto(base + "/no-such-page")
        expect(page.get_by_text("Error 404")).to_be_visible()
        page.screenshot(path=ARTIFACTS / "web-8-error.png", full_page=True)

        # a phone-sized screen gets one column
        phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
        small = phone.new_page()
        small.goto(base + "/")
        small.screenshot(path=ARTIFACTS / "web-9-subscribe-phone.png", full_page=True)
        width = small.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"page scrolls sideways on a phone ({width}px)"
    # the 404 above logs a console error for the failed resource; nothing else may
    assert [p for p in problems if "404" not in p and "410" not in p] == []


def _links(text: str, base: str) -> list[str]:
    return [base + path for path in LINK.findall(text.replace(base, "http://testserver"))]
