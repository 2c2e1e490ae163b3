"""A rendered digest in real headless Chromium: desktop, phone and dark mode screenshots.

Writes test-artifacts/digest-desktop.png and digest-phone.png (the mail), digest-dark.png
(the digest's browser page in dark mode) and digest-dark-mail.png (the mail as a mail app's
dark mode paints it), also via ``make screenshot``, and checks what a reader would see.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from digestbot.config import default_config
from digestbot.render import render_digest
from digestbot.scoring.picks import Pick

from .browser import ARTIFACTS, chromium
from .test_render_helpers import SECRET, paper, reader

PAPERS = [
    (
        "Scaling Monosemanticity: Extracting Interpretable Features from Claude 3 Sonnet",
        "Sparse autoencoders produce interpretable features for large models. We scale them "
        "to a production model and find abstract, multilingual and multimodal features.",
        "Anthropic",
        412,
        ("sparse autoencoders", "interpretability"),
        None,
    ),
    (
        "Gated Sparse Autoencoders Improve Dictionary Learning",
        "We introduce a gated architecture that separates detecting which features are "
        "active from estimating their magnitudes. It halves the shrinkage bias.",
        "Google DeepMind",
        188,
        ("sparse autoencoders",),
        None,
    ),
    (
        "Transcoders Find Interpretable LLM Feature Circuits",
        "Transcoders approximate an MLP layer with a wider, sparsely activating one. "
        "Circuits through them are simple to read off.",
        None,
        97,
        (),
        "Towards Monosemanticity",
    ),
    (
        "Diffusion Models as Plug-and-Play Priors for Inverse Problems <v2>",
        "A single pretrained diffusion model solves deblurring, inpainting and super-resolution "
        "without retraining, by alternating between a data term and the learned prior.",
        "Tsinghua University",
        54,
        ("interpretability",),
        None,
    ),
]


# 20 papers: the four above and sixteen more, with first authors, code links and
# organisations, as a busy day's digest looks
EXTRA = [
    (
        f"{topic} for Sparse Dictionary Learning in Large Language Models, part {n}",
        f"We study {topic.lower()} and report what the learned features show. Code is public.",
        org,
        90 - 4 * n,
        ("sparse autoencoders",) if n % 3 else ("interpretability",),
        None,
    )
    for n, (topic, org) in enumerate(
        [
            ("Feature Splitting", "Stanford University"),
            ("Dead Latents", None),
            ("Top-k Activations", "OpenAI"),
            ("Attribution Patching", "MIT"),
        ]
        * 4,
        1,
    )
]
AUTHORS = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger W. Dijkstra", "Barbara Liskov"]
LIMIT = 100_000


@pytest.fixture(scope="module")
def digest_file() -> Path:
    config = default_config(web__secret_key=SECRET, digest__from_name="Paper digest")
    entries = []
    for i, (title, abstract, org, upvotes, matched, similar) in enumerate(PAPERS + EXTRA):
        p = paper(
            i,
            title=title,
            abstract=abstract,
            organization=org,
            authors=AUTHORS[: 2 + i % 4],
            author_count=2 + i % 4 + (9 if i % 2 else 0),
            upvotes=upvotes,
            published_on=date(2026, 11, 19 + i % 3),
        )
        if i % 2 == 0:
            p.github_url = f"https://github.com/example/paper-{i}"
        entries.append((p, Pick(p.id, 0.82 - 0.03 * i, matched, None, similar)))
    for whole, name in ((False, "digest.html"), (True, "digest-page.html")):
        rendered = render_digest(
            reader(max_items=20),
            entries,
            period="2026-11-23/daily",
            config=config,
            now=datetime(2026, 11, 23, 7, tzinfo=UTC),
            whole=whole,
        )
        assert rendered is not None
        if not whole:
            assert len(rendered.as_bytes()) < LIMIT
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / name).write_text(rendered.html, encoding="utf-8")
    return ARTIFACTS / "digest.html"


# The WCAG contrast ratio of every element's own text against the background behind it
# (the nearest ancestor with an opaque background colour), in the page as rendered.
CONTRAST = """() => {
  const rgb = (s) => s.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = getComputedStyle(el).backgroundColor;
      const v = rgb(c);
      if (v.length < 4 || v[3] > 0) return v;
    }
    return rgb(getComputedStyle(document.documentElement).backgroundColor || "rgb(255,255,255)");
  };
  const out = [];
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const style = getComputedStyle(el);
    const a = lum(rgb(style.color)), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    out.push({ text: el.textContent.trim().slice(0, 40), ratio, size: parseFloat(style.fontSize) });
  }
  return out;
}"""


LAYOUT = """() => ({
    container: document.querySelector('.container').getBoundingClientRect().width,
    overflow: document.documentElement.scrollWidth,
    page: getComputedStyle(document.querySelector('.page')).backgroundColor,
    title: getComputedStyle(document.querySelector('.title-link')).color,
    papers: document.querySelectorAll('h2').length,
    full: document.querySelectorAll('.paper').length,
})"""


def shoot(browser: Any, name: str, file: Path, width: int, scheme: str) -> dict[str, Any]:
    """Screenshot ``file`` as test-artifacts/digest-NAME.png; its layout and text contrast."""
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
    # an email must not fetch anything: fail on any request but the file itself
    requests: list[str] = []
    page.on("request", lambda r, seen=requests: seen.append(r.url))
    page.goto(file.as_uri())
    shot = ARTIFACTS / f"digest-{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    found: dict[str, Any] = page.evaluate(LAYOUT)
    found["text"] = page.evaluate(CONTRAST)
    found["brightness"] = brightness(shot)
    assert requests == [file.as_uri()]
    assert shot.stat().st_size > 20_000
    page.close()
    return found


def brightness(png: Path) -> float:
    """The mean grey level (0 to 255) of a screenshot, as painted."""
    from PIL import Image, ImageStat

    with Image.open(png) as image:
        return float(ImageStat.Stat(image.convert("L")).mean[0])


@pytest.mark.browser
def test_screenshots_in_chromium(digest_file: Path) -> None:
    web_page = digest_file.with_name("digest-page.html")
    with chromium() as browser:
        shots = {
            "desktop": shoot(browser, "desktop", digest_file, 760, "light"),
            "phone": shoot(browser, "phone", digest_file, 390, "light"),
            # the whole digest on the web front follows the reader's scheme
            "dark": shoot(browser, "dark", web_page, 760, "dark"),
        }
    # A mail in dark mode, as the mail apps show it: mail cannot restyle itself (no <style>,
    # see _base.html.j2), so the app darkens it; Chromium's auto dark mode does the same.
    with chromium(force_dark=True) as browser:
        shots["dark-mail"] = shoot(browser, "dark-mail", digest_file, 390, "dark")
    assert "<style" not in digest_file.read_text(encoding="utf-8")
    assert shots["desktop"]["container"] == 600
    assert shots["desktop"]["papers"] == len(PAPERS + EXTRA)
    assert shots["desktop"]["full"] == 10  # the rest are shorter
    assert shots["dark"]["full"] == len(PAPERS + EXTRA)  # the page shows every card in full
    assert shots["phone"]["container"] <= 390
    assert shots["phone"]["overflow"] <= 390  # nothing wider than the phone
    assert shots["desktop"]["page"] == "rgb(238, 241, 245)"
    assert shots["dark"]["page"] == "rgb(15, 17, 21)"
    assert shots["dark"]["title"] == "rgb(138, 180, 255)"
    assert shots["desktop"]["brightness"] > 180
    assert shots["dark"]["brightness"] < 60
    assert shots["dark-mail"]["brightness"] < 60
    # WCAG AA: 4.5:1 for text (3:1 only for large text, which none of ours needs), and
    # body text at least 14 px, light and dark
    for name in ("desktop", "phone", "dark"):
        texts = shots[name]["text"]
        assert len(texts) > 100
        low = [t for t in texts if t["ratio"] < 4.5]
        assert not low, (name, low[:5])
        small = [t for t in texts if t["size"] < 14]
        assert not small, (name, small[:5])
