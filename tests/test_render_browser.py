"""A rendered digest in real headless Chromium: desktop, phone and dark mode screenshots.

Writes test-artifacts/digest-desktop.png, digest-phone.png and digest-dark.png (also via
``make screenshot``) and checks the layout a reader would see.
"""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def digest_file() -> Path:
    config = default_config(web__secret_key=SECRET, digest__from_name="Paper digest")
    entries = []
    for i, (title, abstract, org, upvotes, matched, similar) in enumerate(PAPERS):
        p = paper(
            i,
            title=title,
            abstract=abstract,
            organization=org,
            author_count=3 + 4 * i,
            upvotes=upvotes,
            published_on=date(2026, 11, 19 + i % 3),
        )
        entries.append((p, Pick(p.id, 0.82 - 0.13 * i, matched, None, similar)))
    rendered = render_digest(
        reader(),
        entries,
        period="2026-11-23/daily",
        config=config,
        now=datetime(2026, 11, 23, 7, tzinfo=UTC),
    )
    assert rendered is not None
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "digest.html"
    path.write_text(rendered.html, encoding="utf-8")
    return path


@pytest.mark.browser
def test_screenshots_in_chromium(digest_file: Path) -> None:
    with chromium() as browser:
        shots = {}
        for name, width, scheme in (
            ("desktop", 760, "light"),
            ("phone", 390, "light"),
            ("dark", 760, "dark"),
        ):
            page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
            # an email must not fetch anything: fail on any request but the file itself
            requests: list[str] = []
            page.on("request", lambda r, seen=requests: seen.append(r.url))
            page.goto(digest_file.as_uri())
            shot = ARTIFACTS / f"digest-{name}.png"
            page.screenshot(path=str(shot), full_page=True)
            shots[name] = page.evaluate(
                """() => ({
                    container: document.querySelector('.container')
                        .getBoundingClientRect().width,
                    overflow: document.documentElement.scrollWidth,
                    body: getComputedStyle(document.body).backgroundColor,
                    title: getComputedStyle(document.querySelector('.title-link')).color,
                    papers: document.querySelectorAll('.paper').length,
                })"""
            )
            assert requests == [digest_file.as_uri()]
            assert shot.stat().st_size > 20_000
            page.close()
    assert shots["desktop"]["container"] == 600
    assert shots["desktop"]["papers"] == len(PAPERS)
    assert shots["phone"]["container"] <= 390
    assert shots["phone"]["overflow"] <= 390  # nothing wider than the phone
    assert shots["desktop"]["body"] == "rgb(238, 241, 245)"
    assert shots["dark"]["body"] == "rgb(15, 17, 21)"
    assert shots["dark"]["title"] == "rgb(138, 180, 255)"
