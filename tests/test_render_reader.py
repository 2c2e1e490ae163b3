"""What a reader sees in a digest: authors and links, relevance in words, a header that
says what was done, a message under Gmail's clipping limit, a text part that fits a
terminal."""

from __future__ import annotations

import re
from email import message_from_bytes, policy

import pytest

from digestbot.config import default_config
from digestbot.render import render_digest
from digestbot.render.clean import display_width
from digestbot.scoring.picks import Pick
from digestbot.tokens import Tokens

from .test_render_helpers import HOSTILE_TITLES, NOW, SECRET, paper, reader

CONFIG = default_config(web__secret_key=SECRET, digest__from_address="papers@lab.example")
LIMIT = 100_000  # Gmail clips at 102 KB


def picks(n: int, kind: str = "plain") -> list[tuple[object, Pick]]:
    out = []
    for i in range(n):
        kw: dict[str, object] = {}
        if kind == "long":  # as long as every field gets, and highlights everywhere
            kw = {
                "title": ("sparse autoencoders interpretability " * 20)[:300],
                "abstract": "Sparse autoencoders & interpretability <b> " * 40,
                "authors": ["X" * 60] * 50,
                "organization": "O&" * 100,
                "github_url": "https://github.com/" + "a" * 400,
            }
        elif kind == "cjk":
            kw = {
                "title": "大型语言模型" * 60,
                "abstract": "大型语言模型。" * 80,
                "authors": ["李" * 40] * 5,
                "organization": "大学" * 40,
            }
        elif kind == "hostile":
            title = list(HOSTILE_TITLES.values())[i % len(HOSTILE_TITLES)]
            kw = {"title": title, "abstract": title + ". " + title}
        p = paper(i, **kw)
        similar = "语言" * 100 if kind == "cjk" else "Towards " + "m" * 200
        matched = ("sparse autoencoders", "interpretability")
        out.append((p, Pick(p.id, 1.0 - i / 200, matched, None, similar)))
    return out


def render(items, sub=None, config=CONFIG, period="2026-11-23/daily"):
    rendered = render_digest(sub or reader(), items, period=period, config=config, now=NOW)
    assert rendered is not None
    return rendered


def test_a_paper_shows_its_authors_links_and_relevance_in_words() -> None:
    p = paper(0, authors=["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra"])
    p.github_url = "https://github.com/example/sae"
    p.author_count = 39
    rendered = render([(p, Pick(p.id, 0.21, ("sparse autoencoders",)))])
    for part in (rendered.html, rendered.text):
        assert "Ada Lovelace, Alan Turing, Grace Hopper et al." in part
        assert "Example Lab" in part
        assert "https://huggingface.co/papers/2411.00000" in part
        assert "https://arxiv.org/abs/2411.00000" in part
        assert "https://github.com/example/sae" in part
        assert "top match" in part and "Matches your keyword" in part
        assert "0.21" not in part  # no raw score
    assert 'href="https://arxiv.org/pdf/2411.00000"' in rendered.html
    assert "▲ 120 upvotes" in rendered.html


def test_one_heading_per_paper_and_links_that_name_it() -> None:
    items = picks(12)
    html = render(items).html
    assert html.count("<h1") == 1
    assert html.count("<h2") == 12
    # links whose text alone does not name the paper name it in their title (Yahoo drops
    # aria-label, and doiuse-email says so)
    for text in ("More like this", "Less like this", "arXiv", "PDF"):
        anchors = re.findall(rf"<a [^>]*>{text}</a>", html)
        assert anchors, text
        for anchor in anchors:
            assert re.search(r'title="[^"]*model \d+"', anchor), anchor


def test_header_says_trending_only_when_popularity_counts() -> None:
    items = picks(3)
    no_keywords = reader(keywords=[])
    plain = render(items, no_keywords).html
    assert "trending" not in plain and "Chosen from the papers you liked." in plain
    config = CONFIG.replace(scoring__popularity_weight=0.3)
    mixed = render(items, no_keywords, config=config)
    assert "Chosen from the papers you liked and what is trending." in mixed.html
    assert "and what is trending:" in render(items, config=config).text
    # nor does the why line of a pick that matched nothing in particular
    p = paper(0)
    vague = render([(p, Pick(p.id, 0.3))], no_keywords).html
    assert "Close to your interests overall (120 upvotes)" in vague
    assert "trending" not in vague


@pytest.mark.parametrize("kind", ["plain", "long", "cjk", "hostile"])
def test_every_message_stays_under_gmail_clipping(kind: str) -> None:
    items = picks(100, kind)
    rendered = render(items, reader(max_items=100))
    size = len(rendered.as_bytes())
    assert size < LIMIT, size
    html = rendered.html
    shown = html.count("<h2")
    assert shown >= 3
    # the first ten in full (the feedback links), the rest shorter
    assert html.count("More like this") == min(10, shown)
    if shown < len(items):
        rest = len(items) - shown
        assert f"See the other {rest} papers in your browser" in html
        assert f"See the other {rest} papers in your browser" in rendered.text
    view = re.search(r'href="(http://127\.0\.0\.1:8080/digest/([\w.-]+))"', html)
    assert view is not None
    assert Tokens(SECRET).loads("digest", view.group(2)) == {
        "s": "preftoken0001abcdefghijkl",
        "p": "2026-11-23/daily",
    }


def test_forty_ordinary_papers_all_fit() -> None:
    rendered = render(picks(40), reader(max_items=40))
    assert rendered.html.count("<h2") == 40
    assert "in your browser</a>" in rendered.html  # the page is linked all the same
    assert "See the other" not in rendered.html
    assert len(rendered.as_bytes()) < LIMIT


@pytest.mark.parametrize("kind", ["plain", "long", "cjk", "hostile"])
def test_text_part_fits_78_columns(kind: str) -> None:
    rendered = render(picks(20, kind), reader(name="李" * 30, email="a" * 60 + "@example.org"))
    text = message_from_bytes(rendered.as_bytes(), policy=policy.default)
    body = text.get_payload()[0].get_content()
    assert body == rendered.text
    for line in body.splitlines():
        # a link cannot be broken: it stands alone on its line
        if re.fullmatch(r" *(\w+: )?https?://\S+", line):
            continue
        assert display_width(line) <= 78, line
    # feedback links no longer fill the text part: one browser link for all papers
    assert "/feedback/" not in body
    assert 1 <= body.count("/digest/") <= 2  # and again for the papers left out
    if kind == "plain":  # (the long papers' own code links are as long as they are)
        links = sum(len(m) for m in re.findall(r"https?://\S+", body))
        assert links < 0.25 * len(body)
