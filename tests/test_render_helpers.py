"""Fixed papers, picks and readers for the render tests (no tests in here)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from digestbot.scoring.picks import Pick
from digestbot.store import Paper, Subscriber

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)  # a Monday, 08:00 in Berlin
SECRET = "test-secret-key-not-for-production"

HOSTILE_TITLES = {
    "script": "<script>alert(1)</script> Attention is all you need",
    "cdata": "Breaking ]]> out of CDATA ]]&gt; and </title>",
    "entity": "Tom &amp; Jerry: &lt;b&gt; entities &#x41; stay literal",
    "control": (
        "Control\x00chars\x07 and \x1b[31mANSI\x1b[0m\x0b\x0c and a\r\nBcc: evil@example.com"
    ),
    "long": "Long " + "x" * 1995,
    "rtl": "Right-to-left \u202etxet desrever\u202c and \u200fمرحبا بالعالم\u200f",
    "emoji": "Emoji 🤖🧠 and CJK 大型语言模型 and combining e\u0301",
    "latex": r"LaTeX $\cdot$ and $O(n^2)$ with \frac{a}{b} and 50% & <= 3",
}


def paper(i: int, **kw: object) -> Paper:
    base: dict[str, object] = {
        "id": f"2411.{i:05d}",
        "arxiv_id": f"2411.{i:05d}",
        "title_key": f"key{i}",
        "title": f"Sparse autoencoders reveal features in model {i}",
        "abstract": (
            "We train sparse autoencoders on the activations of a language model. "
            "The learned features are interpretable and causal. We release code."
        ),
        "authors": ["Ada Lovelace", "Alan Turing", "Grace Hopper"],
        "author_count": 3,
        "organization": "Example Lab",
        "published_on": date(2026, 11, 20),
        "listed_on": date(2026, 11, 21),
        "upvotes": 120 - i,
        "comments": i % 4,
        "links": [],
        "first_seen_at": datetime(2026, 11, 21, 6, 0, tzinfo=UTC),
    }
    base.update(kw)
    return Paper(**base)


def reader(i: int = 1, **kw: object) -> Subscriber:
    base: dict[str, object] = {
        "id": i,
        "email": f"reader{i}@example.org",
        "email_key": f"reader{i}@example.org",
        "name": "Ada",
        "keywords": ["sparse autoencoders", "interpretability"],
        "frequency": "daily",
        "weekday": 0,
        "send_hour": 8,
        "timezone": "Europe/Berlin",
        "max_items": 10,
        "min_score": 0.0,
        "formats": "both",
        "status": "active",
        "feed_token": f"feedtoken{i:04d}abcdefghijkl",
        "pref_token": f"preftoken{i:04d}abcdefghijkl",
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    base.update(kw)
    return Subscriber(**base)


def entries(n: int = 3) -> list[tuple[Paper, Pick]]:
    out = []
    for i in range(n):
        p = paper(i)
        matched = ("sparse autoencoders",) if i != 1 else ()
        similar = ("2410.00001", "Towards monosemanticity") if i == 1 else (None, None)
        out.append((p, Pick(p.id, round(0.8 - 0.1 * i, 2), matched, similar[0], similar[1])))
    return out
