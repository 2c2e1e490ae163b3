"""Digest emails: structure, headers, links, and untrusted text in every output."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from html import unescape
from html.parser import HTMLParser

import pytest

from digestbot import clock
from digestbot.config import default_config
from digestbot.render import build_message, render_digest
from digestbot.render.clean import Highlighter, clean_text
from digestbot.render.digest import week_range
from digestbot.render.links import feedback_url, paper_url, preferences_url, unsubscribe_url
from digestbot.render.message import mime_bytes
from digestbot.tokens import Tokens

from .test_render_helpers import HOSTILE_TITLES, NOW, SECRET, entries, paper, reader

CONFIG = default_config(web__secret_key=SECRET, digest__from_address="papers@lab.example")


def parse(data: bytes) -> EmailMessage:
    msg = message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


@pytest.fixture
def freeze_links(request: pytest.FixtureRequest) -> Callable[[], None]:
    """Stops the clock for the rest of the test: signed links carry the second they were
    signed at, so renders compared byte for byte must sign at the same one (forked render
    workers inherit the stopped clock)."""

    def freeze() -> None:
        moved = clock.moved_to(datetime.fromtimestamp(1_790_000_000.25, UTC))
        moved.__enter__()
        request.addfinalizer(lambda: moved.__exit__(None, None, None))

    return freeze


def assert_no_defects(msg: EmailMessage) -> None:
    for part in msg.walk():
        assert part.defects == [], (part.get_content_type(), part.defects)
    for name, value in msg.items():
        assert getattr(value, "defects", ()) == (), (name, value.defects)


def render(sub=None, items=None, **overrides):
    config = CONFIG.replace(**overrides) if overrides else CONFIG
    return render_digest(
        sub or reader(),
        entries() if items is None else items,
        period="2026-11-23/daily",
        config=config,
        now=NOW,
    )


class Tags(HTMLParser):
    """Collects start tags, to check that untrusted text never becomes markup."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)


def test_message_structure_and_headers() -> None:
    rendered = render()
    msg = parse(rendered.as_bytes())
    assert_no_defects(msg)
    assert msg.get_content_type() == "multipart/alternative"
    text_part, html_part = msg.get_payload()
    assert text_part.get_content_type() == "text/plain"
    assert html_part.get_content_type() == "text/html"
    assert text_part.get_content_charset() == html_part.get_content_charset() == "utf-8"
    assert text_part.get_content() == rendered.text
    # the HTML travels as 7-bit ASCII, non-ASCII as character references: the same document
    assert unescape(html_part.get_content()) == unescape(rendered.html)
    assert html_part["Content-Transfer-Encoding"] == "7bit"
    assert msg["From"] == "digestbot <papers@lab.example>"
    assert msg["To"] == "Ada <reader1@example.org>"
    assert msg["Subject"] == "3 new papers for you · Mon 23 Nov · sparse autoencoders"
    assert msg["Date"] == "Mon, 23 Nov 2026 08:00:00 +0100"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["List-Id"] == "digestbot <digest.digestbot.localhost>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = [u.strip(" <>") for u in msg["List-Unsubscribe"].split(",")]
    assert https.startswith("http://127.0.0.1:8080/unsubscribe/")
    assert mailto.startswith("mailto:papers@lab.example?subject=unsubscribe%20")
    tokens = Tokens(SECRET)
    assert tokens.loads("unsubscribe", https.rsplit("/", 1)[1]) == "preftoken0001abcdefghijkl"
    assert tokens.loads("unsubscribe", mailto.rsplit("%20", 1)[1]) == "preftoken0001abcdefghijkl"
    assert rendered.message["Message-ID"] == rendered.message_id
    assert rendered.paper_ids == ["2411.00000", "2411.00001", "2411.00002"]


def test_message_id_is_stable_per_period_and_hides_the_address() -> None:
    a, b = render(), render()
    assert a.message_id == b.message_id
    assert re.fullmatch(r"<[0-9a-f]{40}@lab\.example>", a.message_id)
    assert "reader1" not in a.message_id and "example.org" not in a.message_id
    other_period = render_digest(
        reader(), entries(), period="2026-11-24/daily", config=CONFIG, now=NOW
    )
    assert other_period is not None and other_period.message_id != a.message_id
    assert render(reader(2)).message_id != a.message_id


def test_html_and_text_carry_the_same_content() -> None:
    rendered = render()
    for needle in (
        "https://huggingface.co/papers/2411.00000",
        "Sparse autoencoders reveal features in model 2",
        "Ada Lovelace, Alan Turing, Grace Hopper",
        "Example Lab · 20 Nov 2026 · ▲ 120 upvotes",
        "https://arxiv.org/abs/2411.00000",
        "Similar to “Towards monosemanticity”, which you liked",
        "We train sparse autoencoders on the activations of a language model.",
        "Monday 23 November 2026",
        "3 new papers for you",
    ):
        assert needle in rendered.text, needle
    html_text = re.sub(r"<[^>]+>", "", rendered.html).replace("\n", " ")
    for needle in (
        "Ada Lovelace, Alan Turing, Grace Hopper",
        "Example Lab · 20 Nov 2026 · ▲ 120 upvotes",
        "Similar to “Towards monosemanticity”, which you liked",
        "Monday 23 November 2026",
    ):
        assert needle in html_text.replace("&nbsp;", " "), needle
    # the footer: why they get it, preferences, unsubscribe, their feed
    assert "reader1@example.org subscribed to daily paper digests" in " ".join(
        rendered.text.split()
    )
    for part in (rendered.text, rendered.html):
        assert "/preferences/" in part and "/unsubscribe/" in part
        assert "/feeds/feedtoken0001abcdefghijkl.rss" in part
    assert "/feeds/" not in render(reader(formats="email")).text


def test_css_is_inlined_and_dark_mode_only_on_the_browser_page() -> None:
    html = render().html
    assert 'class="title-link" href="https://huggingface.co/papers/2411.00000" style="' in html
    assert '<b\nclass="kw" style="background-color: #fef3c7' in html
    # Jinja in <title> (raw text to the inliner's parser) survives inlining
    assert "<title>3 new papers for you · Mon 23 Nov · sparse autoencoders</title>" in html
    # mail: every rule inlined, no <style> (Gmail's mobile web drops it) and no claim of a
    # dark scheme it could not honour without one
    assert "<style" not in html and "color-scheme" not in html
    page = render_digest(
        reader(), entries(), period="2026-11-23/daily", config=CONFIG, now=NOW, whole=True
    )
    assert page is not None
    assert '<meta name="color-scheme" content="light dark">' in page.html
    style = page.html[page.html.index("<style>") : page.html.index("</style>")]
    assert "prefers-color-scheme: dark" in style
    # only the @media rules stay in <style>; ordinary rules went into the elements
    assert ".hero-title {" not in style.split("@media")[0]


def test_feedback_links_verify_with_the_web_tokens() -> None:
    sub = reader()
    url = feedback_url(CONFIG, sub, "2411.00007", "less")
    value = Tokens(SECRET).loads("feedback", url.rsplit("/", 1)[1])
    assert value == {"s": sub.pref_token, "p": "2411.00007", "d": "less"}
    assert Tokens(SECRET).loads("preferences", preferences_url(CONFIG, sub).rsplit("/", 1)[1])
    assert "reader1" not in unsubscribe_url(CONFIG, sub)
    with pytest.raises(ValueError):
        feedback_url(CONFIG, sub, "2411.00007", "sideways")
    rendered = render()
    links = re.findall(r"/feedback/([\w.-]+)", rendered.html)
    assert len(links) == 6
    assert "/feedback/" not in rendered.text  # one browser link instead: the text stays short
    assert Tokens(SECRET).loads("feedback", links[0])["d"] == "more"


def test_paper_url_falls_back_to_a_search() -> None:
    assert paper_url(paper(1)) == "https://huggingface.co/papers/2411.00001"
    no_id = paper(1, arxiv_id=None, title="Graph <nets> & more")
    assert paper_url(no_id) == "https://huggingface.co/papers?q=Graph+%3Cnets%3E+%26+more"


def test_empty_digest_is_not_sent_unless_configured() -> None:
    assert render(items=[]) is None
    note = render(items=[], digest__send_empty=True)
    assert note is not None
    assert note.subject == "Nothing new for you · Mon 23 Nov"
    assert "Nothing new today" in note.html and "Nothing new today" in note.text
    assert note.paper_ids == []
    assert_no_defects(parse(note.as_bytes()))


def test_weekly_subject_names_the_dates() -> None:
    rendered = render(reader(frequency="weekly"))
    assert rendered.subject == "3 new papers for you · 17–23 Nov · sparse autoencoders"
    assert week_range(date(2026, 12, 3)) == "27 Nov – 3 Dec"
    assert week_range(date(2027, 1, 2)) == "27 Dec 2026 – 2 Jan 2027"


def test_subject_topic_falls_back_to_the_top_title() -> None:
    items = [(p, pick.__class__(pick.paper_id, pick.score)) for p, pick in entries(1)]
    assert render(items=items).subject == (
        "1 new paper for you · Mon 23 Nov · Sparse autoencoders reveal features in model 0"
    )


def test_naive_now_is_refused() -> None:
    from digestbot.errors import RenderError

    with pytest.raises(RenderError, match="aware"):
        render_digest(reader(), entries(), period="p", config=CONFIG, now=NOW.replace(tzinfo=None))


def test_build_message_for_other_emails() -> None:
    msg = build_message(
        CONFIG,
        to="new@example.org",
        subject="Confirm your digestbot subscription",
        text="Click the link.",
        html="<p>Click the link.</p>",
        headers={"X-Digestbot-Kind": "confirm"},
    )
    again = parse(msg)
    assert_no_defects(again)
    assert again["X-Digestbot-Kind"] == "confirm"
    assert again["Message-ID"].endswith("@lab.example>")
    assert [p.get_content_type() for p in again.iter_parts()] == ["text/plain", "text/html"]
    text_only = build_message(CONFIG, to="a@example.org", subject="s", text="t", html=None)
    assert parse(text_only).get_content_type() == "text/plain"
    assert_no_defects(parse(text_only))


def test_direct_mime_falls_back_to_quoted_printable_for_long_lines() -> None:
    html = "<p>" + "wörd " * 400 + "</p>"
    data = mime_bytes([("Subject", "x")], "plain", html)
    assert b"quoted-printable" in data
    msg = parse(data)
    assert_no_defects(msg)
    assert msg.get_payload()[1].get_content() == html


@pytest.mark.parametrize("case", sorted(HOSTILE_TITLES))
def test_hostile_titles_in_html_text_and_headers(case: str) -> None:
    title = HOSTILE_TITLES[case]
    hostile = paper(0, title=title, abstract=title + ". " + title, organization=title[:150])
    sub = reader(keywords=[title[:40], "<b>", "amp"], name=title[:60])
    pick = entries(1)[0][1].__class__(hostile.id, 0.9, matched=(title[:30],))
    rendered = render_digest(sub, [(hostile, pick)], period="p", config=CONFIG, now=NOW)
    assert rendered is not None
    msg = parse(rendered.as_bytes())
    assert_no_defects(msg)
    # headers: one Subject, one To, no injected Bcc, no control characters
    assert msg.get_all("Bcc") is None
    assert len(msg.get_all("Subject")) == 1
    assert not re.search(r"[\x00-\x1f\x7f]", str(msg["Subject"]))
    assert len(msg.get_all("To")) == 1
    # HTML: the title's markup is text, never a tag
    tags = Tags()
    tags.feed(rendered.html)
    assert "script" not in tags.tags and "title" in tags.tags
    assert tags.tags.count("title") == 1
    # highlights are <b class="kw">: a bare <b> would be the title's own markup
    assert "<script>" not in rendered.html and "<b>" not in rendered.html
    # the text part and the HTML have no control characters but newlines
    for part in (rendered.text, rendered.html):
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]", part)
    shown = clean_text(title)
    if case in ("script", "cdata", "entity", "emoji", "latex"):
        assert shown in rendered.text
        sent = parse(rendered.as_bytes()).get_payload()[1].get_content()
        assert unescape(sent) == unescape(rendered.html)
    if case == "long":
        assert max(len(line) for line in rendered.html.splitlines()) <= 998
        assert "x" * 2000 not in rendered.text and "…" in rendered.text


def test_highlighter_never_touches_entities() -> None:
    hl = Highlighter(["amp", "lt", "a&b", "39"])
    marked = hl.mark("Tom & Jerry <lt> a&b it's amp 39", "<m>", "</m>")
    assert str(marked) == (
        "Tom &amp; Jerry &lt;<m>lt</m>&gt; <m>a&amp;b</m> it&#39;s <m>amp</m> <m>39</m>"
    )


def test_bulk_signer_makes_the_same_tokens_as_itsdangerous(
    freeze_links: Callable[[], None],
) -> None:

    from digestbot.render.links import BulkSigner

    freeze_links()
    tokens = Tokens(SECRET)
    for purpose, value in (
        ("feedback", {"s": "preftoken", "p": "2411.00001", "d": "more"}),
        ("unsubscribe", "preftoken0001abcdefghijkl"),
        ("preferences", "ünïcode-tøken"),
        ("feedback", {"s": "x" * 300, "p": "long payload goes through zlib", "d": "less"}),
    ):
        ours = BulkSigner(SECRET, purpose).dumps(value)
        assert ours == tokens.dumps(purpose, value)
        assert tokens.loads(purpose, ours) == value


def _cards_in(html: str) -> list[tuple[str, str, list[str]]]:
    """(title text, title link, feedback links) per paper, as an HTML parser reads the
    document (lxml, independent of how the digest was put together): a paper's first link
    is its title, and the feedback links up to the next paper are its own."""
    import lxml.html

    doc = lxml.html.document_fromstring(html)
    cards: list[tuple[str, str, list[str]]] = []
    for link in doc.iter("a"):
        href = link.get("href") or ""
        if href.startswith("https://huggingface.co/papers"):
            if cards and cards[-1][1] == href:  # the card's other link to the paper
                continue
            # long words carry zero-width break points (U+200B) so narrow screens wrap them
            title = " ".join(link.text_content().replace("\u200b", "").split())
            cards.append((title, href, []))
        elif "/feedback/" in href and cards:
            cards[-1][2].append(href)
    return cards


def test_cached_cards_give_every_reader_their_own_valid_digest(
    freeze_links: Callable[[], None],
) -> None:
    """Each paper's card is rendered once and filled per reader: read back by the stdlib
    parser and by lxml, each reader's message shows every paper's title and link, and
    feedback links that verify for that reader and paper, cold or warm caches alike."""

    from digestbot.render.digest import FULL_CARDS, clear_caches
    from digestbot.render.views import paper_view

    freeze_links()
    hostile = [
        paper(10 + i, title=t, abstract=t + ". " + t) for i, t in enumerate(HOSTILE_TITLES.values())
    ]
    items = entries(4) + [
        (p, entries(1)[0][1].__class__(p.id, 0.5, matched=("<b>", "amp"))) for p in hostile
    ]
    subs = [reader(), reader(2, keywords=["<b>", "amp", "LaTeX", "x" * 3]), reader(3, keywords=[])]
    tokens = Tokens(SECRET)
    for sub in subs:
        made = []
        for cold in (True, False):
            if cold:
                clear_caches()
            rendered = render_digest(sub, items, period="p", config=CONFIG, now=NOW)
            assert rendered is not None
            made.append(rendered.as_bytes())
            msg = parse(rendered.as_bytes())
            assert_no_defects(msg)
            text_part, html_part = msg.get_payload()
            html = html_part.get_content()
            assert unescape(html) == unescape(rendered.html)  # sent as ASCII, char refs
            assert text_part.get_content() == rendered.text
            cards = _cards_in(html)
            assert len(cards) == len(items)
            for n, ((shown, href, feedback), (p, _)) in enumerate(zip(cards, items, strict=True)):
                view = paper_view(p)
                assert shown == " ".join(view.title.split()) and href == paper_url(p)
                values = [tokens.loads("feedback", f.rsplit("/", 1)[1]) for f in feedback]
                # full cards carry "more/less like this"; the short ones after them do not
                assert values == (
                    [
                        {"s": sub.pref_token, "p": p.id, "d": "more"},
                        {"s": sub.pref_token, "p": p.id, "d": "less"},
                    ]
                    if n < FULL_CARDS
                    else []
                )
                assert " ".join(view.title_wrapped.split()) in " ".join(rendered.text.split())
        assert made[0] == made[1]


def test_bulk_signer_feedback_tokens_match_itsdangerous(freeze_links: Callable[[], None]) -> None:

    from digestbot.render.links import BulkSigner

    freeze_links()
    tokens = Tokens(SECRET)
    signer = BulkSigner(SECRET, "feedback")
    for pref, paper_id, direction in (
        ("preftoken", "2411.00001", "more"),
        ('quo"te\\ü', "ünï/cøde", "less"),
        ("x" * 300, "long payload goes through zlib", "less"),
    ):
        value = {"s": pref, "p": paper_id, "d": direction}
        ours = signer.dumps_feedback(pref, paper_id, direction)
        assert ours == tokens.dumps("feedback", value) == signer.dumps(value)
        assert tokens.loads("feedback", ours) == value


def test_highlighter_mark_safe_matches_mark() -> None:
    from markupsafe import escape

    from digestbot.render.clean import word_index

    hl = Highlighter(["amp", "lt", "a&b", "39", "sparse autoencoders", "_x"])
    for text in (
        "Tom & Jerry <lt> a&b it's amp 39",
        "Sparse autoencoders, sparse autoencoders_x and _x sparse-autoencoders",
        "İstanbul amp",
        "39 &#39; #39 amp&amp; _x_x x_x _x",
        "",
    ):
        safe = str(escape(text))
        expected = hl.mark(text, "<m>", "</m>")
        low = safe.lower()
        assert hl.mark_str(safe, low, "<m>", "</m>") == expected
        index = word_index(safe, low)
        assert hl.mark_str(safe, low, "<m>", "</m>", index or {}) == expected


def test_short_lines_check_matches_measuring_every_line() -> None:
    import random

    from digestbot.render.message import _short_lines

    rng = random.Random(1)
    sizes = [0, 1, 50, 498, 499, 500, 997, 998, 999, 1000, 1500]
    for _ in range(3000):
        lines = [b"x" * rng.choice(sizes) for _ in range(rng.randint(1, 8))]
        data = b"\n".join(lines) + (b"\n" if rng.random() < 0.3 else b"")
        assert _short_lines(data) == (max(map(len, data.split(b"\n"))) <= 998)


def test_encoded_words_round_trip_and_stay_short() -> None:
    import random

    from digestbot.render.message import encoded_words

    rng = random.Random(3)
    alphabet = "aZ9 ·▲é大🤖"
    for _ in range(2000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 120)))
        words = encoded_words(value)
        assert all(len(word) <= 75 for word in words.split("\n "))
        msg = parse(f"Subject: {words}\n\nbody\n".encode("ascii"))
        assert msg["Subject"] == value
        assert_no_defects(msg)


def test_cards_message_falls_back_to_quoted_printable_html(
    freeze_links: Callable[[], None],
) -> None:
    """A title of 300 CJK characters is a 2,400-byte line as character references: the
    message built from the cards' encoded pieces falls back to quoted-printable."""

    freeze_links()
    wide = paper(0, title="大" * 300, abstract="模型 " * 100)
    items = [(wide, entries(1)[0][1].__class__(wide.id, 0.9, matched=("大",)))]
    rendered = render_digest(reader(), items, period="p", config=CONFIG, now=NOW)
    assert rendered is not None
    msg = parse(rendered.as_bytes())
    assert_no_defects(msg)
    html_part = msg.get_payload()[1]
    assert html_part["Content-Transfer-Encoding"] == "quoted-printable"
    assert html_part.get_content() == rendered.html
    assert [shown for shown, _, _ in _cards_in(rendered.html)] == ["大" * 300]
