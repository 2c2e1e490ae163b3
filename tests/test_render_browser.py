"""A rendered digest in real headless Chromium: desktop, phone and dark mode screenshots.

Writes test-artifacts/digest-desktop.png, digest-phone.png and digest-dark.png (also via
``make screenshot``) and checks the layout a reader would see.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

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
    rendered = render_digest(
        reader(max_items=20),
        entries,
        period="2026-11-23/daily",
        config=config,
        now=datetime(2026, 11, 23, 7, tzinfo=UTC),
    )
    assert rendered is not None
    assert len(rendered.as_bytes()) < LIMIT
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "digest.html"
    path.write_text(rendered.html, encoding="utf-8")
    # as a client that drops the <style> block shows it (Gmail's mobile web version)
    bare = re.sub(r"<style>.*?</style>", "", rendered.html, flags=re.S)
    (ARTIFACTS / "digest-nostyle.html").write_text(bare, encoding="utf-8")
    return path


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


@pytest.mark.browser
def test_screenshots_in_chromium(digest_file: Path) -> None:
    with chromium() as browser:
        shots = {}
        for name, width, scheme, file in (
            ("desktop", 760, "light", digest_file),
            ("phone", 390, "light", digest_file),
            ("dark", 760, "dark", digest_file),
            ("phone-nostyle", 390, "light", digest_file.with_name("digest-nostyle.html")),
        ):
            page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
            # an email must not fetch anything: fail on any request but the file itself
            requests: list[str] = []
            page.on("request", lambda r, seen=requests: seen.append(r.url))
            page.goto(file.as_uri())
            shot = ARTIFACTS / f"digest-{name}.png"
            page.screenshot(path=str(shot), full_page=True)
            shots[name] = page.evaluate(
                """() => ({
                    container: document.querySelector('.container')
                        .getBoundingClientRect().width,
                    overflow: document.documentElement.scrollWidth,
                    page: getComputedStyle(document.querySelector('.page')).backgroundColor,
                    title: getComputedStyle(document.querySelector('.title-link')).color,
                    papers: document.querySelectorAll('h2').length,
                    full: document.querySelectorAll('.paper').length,
                })"""
            )
            shots[name]["text"] = page.evaluate(CONTRAST)
            assert requests == [file.as_uri()]
            assert shot.stat().st_size > 20_000
            page.close()
    assert shots["desktop"]["container"] == 600
    assert shots["desktop"]["papers"] == len(PAPERS + EXTRA)
    assert shots["desktop"]["full"] == 10  # the rest are shorter
    for name in ("phone", "phone-nostyle"):
        assert shots[name]["container"] <= 390
        assert shots[name]["overflow"] <= 390, name  # nothing wider than the phone
    assert shots["desktop"]["page"] == "rgb(238, 241, 245)"
    assert shots["dark"]["page"] == "rgb(15, 17, 21)"
    assert shots["dark"]["title"] == "rgb(138, 180, 255)"
    # WCAG AA: 4.5:1 for text (3:1 only for large text, which none of ours needs), and
    # body text at least 14 px, light and dark
    for name in ("desktop", "dark", "phone-nostyle"):
        texts = shots[name]["text"]
        assert len(texts) > 100
        low = [t for t in texts if t["ratio"] < 4.5]
        assert not low, (name, low[:5])
        small = [t for t in texts if t["size"] < 14]
        assert not small, (name, small[:5])
