"""GitHub stars: read from the Hugging Face API's papers (``githubStars`` beside
``githubRepo``), kept as the highest count seen, and shown on the code link of the mail, its
text part and the feeds."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

import feedparser
from sqlalchemy import inspect, select, text

from digestbot.config import default_config
from digestbot.ingest import ingest_paths
from digestbot.render import public_feeds, render_digest
from digestbot.render.views import star_count
from digestbot.store import Paper, Store, open_store
from digestbot.store.db import upgrade

from .test_render_helpers import NOW, SECRET, paper, reader

REPO = "https://github.com/example/diff-transformer"
CONFIG = default_config(web__secret_key=SECRET)


def api_dump(folder: Path, day: str, stars: object, **paper_fields: object) -> Path:
    """A daily_papers API answer as `digestbot fetch` saves it: one paper with a repo."""
    item = {
        "paper": {
            "id": "2410.05258",
            "title": "Differential Transformer",
            "summary": "Attention noise is cancelled by the difference of two softmax maps.",
            "authors": [{"name": "Tianzhu Ye"}, {"name": "Li Dong"}],
            "githubRepo": REPO,
            "githubStars": stars,
            "upvotes": 12,
            **paper_fields,
        },
        "publishedAt": f"{day}T00:00:00.000Z",
        "numComments": 2,
    }
    path = folder / f"daily_papers-{day}.json"
    path.write_text(json.dumps([item]), encoding="utf-8")
    return path


def stars_of(store: Store) -> int | None:
    with store.session() as session:
        return session.scalars(select(Paper.github_stars)).one()


def test_stars_are_stored_and_only_grow_whatever_the_order(store: Store, tmp_path: Path) -> None:
    now = datetime(2026, 11, 23, 6, tzinfo=UTC)
    report = ingest_paths(store, [api_dump(tmp_path, "2026-11-20", 1234)], now=now)
    assert report.ok and report.papers_new == 1
    assert stars_of(store) == 1234
    # a later listing: the repository gained stars
    ingest_paths(store, [api_dump(tmp_path, "2026-11-21", 1500)], now=now)
    assert stars_of(store) == 1500
    # an older capture read late does not take them back
    ingest_paths(store, [api_dump(tmp_path, "2026-11-19", 900)], now=now)
    assert stars_of(store) == 1500


def test_a_paper_without_a_repo_or_a_count_has_no_stars(store: Store, tmp_path: Path) -> None:
    ingest_paths(store, [api_dump(tmp_path, "2026-11-20", None)], now=NOW)
    assert stars_of(store) is None


def test_a_count_that_is_not_a_whole_number_fails_the_dump_naming_the_field(
    store: Store, tmp_path: Path
) -> None:
    bad = api_dump(tmp_path, "2026-11-20", "lots")
    report = ingest_paths(store, [bad], now=NOW)
    assert [Path(f.file).name for f in report.failed] == [bad.name]
    assert ".githubStars: expected a whole number >= 0, got 'lots'" in report.failed[0].error


def test_star_counts_read_as_on_github() -> None:
    assert [star_count(n) for n in (0, 950, 1000, 1234, 15_300, 99_950, 1_250_000)] == [
        "0",
        "950",
        "1k",
        "1.2k",
        "15.3k",
        "99k",
        "1.2M",
    ]


def test_the_code_link_shows_the_stars_in_html_text_and_feeds() -> None:
    starred = paper(0, github_url=REPO, github_stars=1234)
    one = paper(1, github_url=REPO + "-2", github_stars=1)
    unknown = paper(2, github_url=REPO + "-3")
    entries = [(p, pick) for p, pick in zip((starred, one, unknown), _picks(), strict=True)]
    rendered = render_digest(reader(), entries, period="2026-11-23/daily", config=CONFIG, now=NOW)
    assert rendered is not None
    html = rendered.html
    assert f'title="Code: Sparse autoencoders reveal features in model 0" href="{REPO}"' in html
    assert ">Code (1.2k stars)</a>" in html
    assert ">Code (1 star)</a>" in html
    assert ">Code</a>" in html  # no count known: no count shown
    message = message_from_bytes(rendered.as_bytes(), policy=policy.default)
    body = message.get_body(("plain",))
    assert body is not None
    plain = body.get_content()
    assert f"Code (1.2k stars): {REPO}" in plain and f"Code: {REPO}-3" in plain
    rss, atom = public_feeds([starred], config=CONFIG)
    for data in (rss, atom):
        summary = feedparser.parse(data).entries[0].summary
        assert f'<a href="{REPO}">Code (1.2k stars)</a>' in summary


def _picks() -> list:
    from digestbot.scoring.picks import Pick

    return [
        Pick(f"2411.{i:05d}", 0.8 - 0.1 * i, ("sparse autoencoders",), None, None) for i in range(3)
    ]


def test_an_older_store_gains_the_column_and_keeps_its_papers(db_url: str) -> None:
    store = open_store(db_url, migrate=False)
    try:
        upgrade(store, "0002_simplify")
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO papers (id, title_key, title, abstract, links, github_url,"
                    " first_seen_at, updated_at) VALUES ('2410.05258', 'k', 'T', 'A', '[]',"
                    " :repo, :now, :now)"
                ),
                {"repo": REPO, "now": NOW},
            )
        assert "github_stars" not in {
            c["name"] for c in inspect(store.engine).get_columns("papers")
        }
        upgrade(store)
        with store.session() as session:
            row = session.get(Paper, "2410.05258")
            assert row is not None
            assert (row.github_url, row.github_stars) == (REPO, None)
    finally:
        store.dispose()
