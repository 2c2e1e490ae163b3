"""Ingestion into a real store, on SQLite and on PostgreSQL."""

from __future__ import annotations

import random
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from digestbot.errors import IngestError
from digestbot.ingest import ingest_inbox, ingest_paths, list_papers, parse_file, title_key
from digestbot.store import Dump, Paper, Sighting, Store

from .conftest import SEEDS

DUMPS = Path(__file__).resolve().parent / "data" / "dumps"
NOW = datetime(2025, 1, 5, 7, 30, tzinfo=UTC)
NPS = "Neural Production Systems: Learning Rule-Governed Visual Dynamics"
HEADER = (
    "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
    "byAK and the research community\n\n"
)


def count(store: Store, model: type) -> int:
    with store.session() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_seeds_give_255_papers_and_a_second_run_changes_nothing(store: Store) -> None:
    report = ingest_paths(store, [SEEDS], now=NOW)
    assert report.as_dict() == {"files": 5, "papers_new": 255, "papers_updated": 0, "failed": []}
    assert len(set(report.new_paper_ids)) == 255
    assert (count(store, Paper), count(store, Sighting), count(store, Dump)) == (255, 281, 5)
    with store.session() as s:
        stamps = set(s.scalars(select(Paper.first_seen_at)))
        before = s.execute(select(Paper.__table__).order_by(Paper.id)).all()
    assert stamps == {NOW}

    again = ingest_paths(store, [SEEDS], now=datetime(2025, 2, 1, tzinfo=UTC))
    assert again.as_dict() == {"files": 5, "papers_new": 0, "papers_updated": 0, "failed": []}
    assert again.skipped == 5 and again.new_paper_ids == []
    assert (count(store, Paper), count(store, Sighting), count(store, Dump)) == (255, 281, 5)
    with store.session() as s:
        after = s.execute(select(Paper.__table__).order_by(Paper.id)).all()
    assert before == after


def test_seen_in_two_dumps_keeps_both_sightings_and_best_metadata(store: Store) -> None:
    # seed 001 lists the paper bare; seed 000 gives "8 authors · Mar 2, 2021"
    nps = "t" + title_key(NPS)[:16]
    first = ingest_paths(store, [SEEDS / "001_338f10c56c26307b.txt"], now=NOW)
    assert nps in first.new_paper_ids
    second = ingest_paths(store, [SEEDS], now=NOW)
    assert nps in second.updated_paper_ids and nps not in second.new_paper_ids
    expected: dict[str, int] = {}
    for seed in SEEDS.iterdir():
        for paper in parse_file(seed).papers:
            expected[paper.id] = expected.get(paper.id, 0) + 1
    with store.session() as s:
        seen = dict(
            s.execute(select(Sighting.paper_id, func.count()).group_by(Sighting.paper_id)).all()
        )
        listed = dict(
            s.execute(
                select(Sighting.paper_id, func.min(Sighting.listed_on)).group_by(Sighting.paper_id)
            ).all()
        )
        papers = {p.id: p for p in s.scalars(select(Paper))}
    assert seen == expected and sum(seen.values()) == 281
    assert any(n > 1 for n in seen.values())
    # a paper's listing date is its earliest sighting's
    assert all(papers[pid].listed_on == day for pid, day in listed.items())
    vit = papers[nps]
    with store.session() as s:
        names = set(
            s.scalars(
                select(Dump.file_name)
                .join(Sighting, Sighting.dump_id == Dump.id)
                .where(Sighting.paper_id == vit.id)
            )
        )
    assert names == {"000_9d4c3e15241ae462.txt", "001_338f10c56c26307b.txt"}
    assert (vit.author_count, vit.published_on) == (8, date(2021, 3, 2))


def test_a_later_source_fills_in_the_arxiv_id_and_the_paper_keeps_its_id(
    store: Store, tmp_path: Path
) -> None:
    page = tmp_path / "page.txt"
    page.write_text(
        HEADER + "Oct 8\n\nDifferential Transformer\n\n"
        "Transformer tends to overallocate attention to irrelevant context.\n",
        encoding="utf-8",
    )
    first = ingest_paths(store, [page], listing_date=date(2024, 10, 8), now=NOW)
    (pid,) = first.new_paper_ids
    assert pid == "t" + title_key("Differential Transformer")[:16]

    later = datetime(2025, 1, 6, tzinfo=UTC)
    second = ingest_paths(store, [DUMPS / "daily_papers.json"], now=later)
    assert second.as_dict() == {"files": 1, "papers_new": 2, "papers_updated": 1, "failed": []}
    assert second.updated_paper_ids == [pid]
    assert sorted(second.new_paper_ids) == ["2410.05440", "2410.05993"]
    with store.session() as s:
        paper = s.get(Paper, pid)
        assert paper is not None
        assert paper.arxiv_id == "2410.05258"
        assert (paper.upvotes, paper.comments, paper.author_count) == (112, 14, 7)
        assert paper.abstract.endswith("in various settings.")  # the longer abstract
        assert paper.github_url == "https://github.com/microsoft/unilm"
        assert paper.first_seen_at == NOW and paper.updated_at == later
        assert paper.listed_on == date(2024, 10, 8)
        assert s.get(Paper, "2410.05258") is None
    # the text page naming the arXiv id now matches by id, not by a new row
    third = ingest_paths(store, [DUMPS / "hf_page_real.txt"], listing_date=date(2024, 10, 8))
    assert third.papers_new == 2 and pid not in third.new_paper_ids
    assert count(store, Paper) == 5


def test_a_failed_dump_is_recorded_and_the_rest_goes_on(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "dumps"
    folder.mkdir()
    bad = folder / "b_bad.txt"
    bad.write_text(HEADER + "Dec 29\n\nOnly a title\n\n  • 2 authors\n·\nDec 1\n", "utf-8")
    shutil.copy(SEEDS / "000_9d4c3e15241ae462.txt", folder / "a_good.txt")
    shutil.copy(SEEDS / "003_2edaceab08cb7299.txt", folder / "c_good.txt")
    report = ingest_paths(store, [folder], now=NOW)
    assert report.as_dict() == {
        "files": 3,
        "papers_new": 107,  # 46 + 62 entries, one paper in both
        "papers_updated": 0,
        "failed": [
            {
                "file": str(bad),
                "line": 13,
                "error": "the paper 'Only a title' has no abstract",
                "hint": "Every paper needs a title line, a blank line, then its abstract.",
            }
        ],
    }
    with store.session() as s:
        rows = {d.file_name: (d.status, d.error) for d in s.scalars(select(Dump))}
    assert rows["a_good.txt"] == ("ok", None) and rows["c_good.txt"] == ("ok", None)
    assert rows["b_bad.txt"] == (
        "failed",
        f"{bad}:13: the paper 'Only a title' has no abstract\n"
        "Hint: Every paper needs a title line, a blank line, then its abstract.",
    )


def test_a_failed_dump_can_be_retried(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "undated.txt"
    path.write_text(HEADER + "A Title\n\nAn abstract.\n", encoding="utf-8")
    failed = ingest_paths(store, [path], now=NOW)
    assert failed.failed[0].error == "no listing date (a line such as 'Dec 29') after the header"
    fixed = ingest_paths(store, [path], listing_date=date(2024, 5, 1), now=NOW)
    assert fixed.ok and fixed.papers_new == 1
    with store.session() as s:
        dumps = list(s.scalars(select(Dump)))
    assert [(d.status, d.listed_on, d.entries, d.papers_new) for d in dumps] == [
        ("ok", date(2024, 5, 1), 1, 1)
    ]


def _add_failing_trigger(store: Store) -> None:
    """Make the database itself refuse the 30th paper of any dump."""
    with store.engine.begin() as conn:
        if store.dialect == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER boom BEFORE INSERT ON sightings WHEN NEW.position = 30 "
                    "BEGIN SELECT RAISE(ABORT, 'boom at 30'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION boom() RETURNS trigger AS $$ BEGIN "
                    "IF NEW.position = 30 THEN RAISE EXCEPTION 'boom at 30'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER boom BEFORE INSERT ON sightings "
                    "FOR EACH ROW EXECUTE FUNCTION boom()"
                )
            )


def test_a_dump_goes_in_whole_or_not_at_all(store: Store) -> None:
    _add_failing_trigger(store)
    report = ingest_paths(
        store, [SEEDS / "000_9d4c3e15241ae462.txt", DUMPS / "daily_papers.json"], now=NOW
    )
    (failure,) = report.failed
    assert failure.file == str(SEEDS / "000_9d4c3e15241ae462.txt")
    assert failure.error.startswith("the database refused the dump: ")
    assert "boom at 30" in failure.error
    # nothing of the failed dump is left; the small dump after it went in
    assert report.papers_new == 3
    assert (count(store, Paper), count(store, Sighting)) == (3, 3)
    with store.session() as s:
        assert sorted(s.scalars(select(Dump.status))) == ["failed", "ok"]


def test_inbox_moves_files_and_explains_failures(store: Store, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(SEEDS / "004_fc84b73cccc19c7c.txt", inbox / "monday.txt")
    shutil.copy(DUMPS / "daily_papers.json", inbox / "api.json")
    (inbox / "broken.json").write_text('[{"paper": ', encoding="utf-8")
    (inbox / ".hidden.txt").write_text("still being written", encoding="utf-8")
    (inbox / "upload.txt.part").write_text("still being written", encoding="utf-8")

    report = ingest_inbox(store, inbox, now=NOW)
    assert report.as_dict() == {
        "files": 3,
        "papers_new": 48 + 3,
        "papers_updated": 0,
        "failed": [
            {
                "file": str(inbox / "broken.json"),
                "line": 1,
                "error": "invalid JSON: Expecting value (column 12)",
                "hint": "The file may be cut off or hand-edited; fetch it again from the API.",
            }
        ],
    }
    assert sorted(p.name for p in inbox.iterdir()) == [
        ".hidden.txt",
        "failed",
        "processed",
        "upload.txt.part",
    ]
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == ["api.json", "monday.txt"]
    assert sorted(p.name for p in (inbox / "failed").iterdir()) == [
        "broken.json",
        "broken.json.error",
    ]
    assert (inbox / "failed" / "broken.json.error").read_text(encoding="utf-8") == (
        f"{inbox / 'broken.json'}:1: invalid JSON: Expecting value (column 12)\n"
        "Hint: The file may be cut off or hand-edited; fetch it again from the API.\n"
    )

    # the same dump arriving again is recognised, and does not overwrite the first copy
    shutil.copy(SEEDS / "004_fc84b73cccc19c7c.txt", inbox / "monday.txt")
    again = ingest_inbox(store, inbox, now=NOW)
    assert (again.files, again.skipped, again.papers_new) == (1, 1, 0)
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == [
        "api.json",
        "monday.txt",
        "monday.txt.1",
    ]
    assert ingest_inbox(store, inbox, now=NOW).files == 0


def test_missing_inbox(store: Store, tmp_path: Path) -> None:
    with pytest.raises(IngestError) as info:
        ingest_inbox(store, tmp_path / "nowhere")
    where = tmp_path / "nowhere"
    assert str(info.value) == f"{where}: ingest.inbox: the inbox folder does not exist"


def test_list_papers(store: Store) -> None:
    ingest_paths(store, [DUMPS / "daily_papers.json"], now=NOW)
    later = datetime(2025, 1, 6, tzinfo=UTC)
    ingest_paths(store, [DUMPS / "hf_page_real.txt"], listing_date=date(2024, 10, 8), now=later)
    papers = list_papers(store)
    # newest listing first, then the most recently seen
    assert [p["id"] for p in papers] == [
        "2309.08520",
        "2410.06205",
        "2410.05258",
        "2410.05440",
        "2410.05993",
    ]
    diff = papers[2]
    assert [s["dump"] for s in diff["sightings"]] == ["daily_papers.json", "hf_page_real.txt"]
    assert diff["listed_on"] == date(2024, 10, 8) and diff["first_seen_at"] == NOW
    assert len(list_papers(store, since=date(2024, 10, 8))) == 5
    assert list_papers(store, since=date(2024, 10, 9)) == []
    assert [p["id"] for p in list_papers(store, limit=2)] == ["2309.08520", "2410.06205"]


def test_an_update_writes_what_improves_and_keeps_the_rest(store: Store, tmp_path: Path) -> None:
    # stored papers are merged from their abstract's length and their JSON as stored;
    # a field the new listing does not improve is left as it is, JSON lists included
    first = ingest_paths(store, [DUMPS / "daily_papers.json"], now=NOW)
    assert "2410.05258" in first.new_paper_ids
    with store.session() as s:
        before = s.execute(select(Paper.__table__).where(Paper.id == "2410.05258")).one()
    page = tmp_path / "page.txt"
    page.write_text(
        HEADER + "Oct 7\n\n[-] 150\n\nhttps://huggingface.co/papers/2410.05258\n\n"
        "Differential Transformer\n\nA shorter abstract.\n\nhttps://github.com/other/repo\n\n"
        "  • 9 authors\n·\nOct 7, 2024 3\n",
        encoding="utf-8",
    )
    later = datetime(2025, 1, 6, tzinfo=UTC)
    second = ingest_paths(store, [page], listing_date=date(2024, 10, 7), now=later)
    assert second.as_dict() == {"files": 1, "papers_new": 0, "papers_updated": 1, "failed": []}
    with store.session() as s:
        after = s.execute(select(Paper.__table__).where(Paper.id == "2410.05258")).one()
        raw = s.execute(text("SELECT authors, links FROM papers WHERE id = '2410.05258'")).one()
    assert (after.upvotes, after.author_count, after.listed_on) == (150, 9, date(2024, 10, 7))
    assert after.comments == 14  # 3 is fewer
    assert after.links == [*before.links, "https://github.com/other/repo"]
    assert after.authors == before.authors and len(after.authors) == 7
    assert raw.authors is not None and raw.links is not None  # never overwritten by NULL
    unchanged = ("title", "abstract", "published_on", "github_url", "organization")
    assert all(getattr(after, n) == getattr(before, n) for n in unchanged)
    assert after.first_seen_at == NOW and after.updated_at == later

    # a longer abstract replaces the stored one; a listing with nothing new writes nothing
    longer = before.abstract + " And more."
    page.write_text(
        HEADER + "Oct 9\n\nhttps://huggingface.co/papers/2410.05258\n\n"
        f"Differential Transformer\n\n{longer}\n",
        encoding="utf-8",
    )
    third = ingest_paths(store, [page], listing_date=date(2024, 10, 9), now=later)
    assert third.papers_updated == 1
    page.write_text(
        HEADER + "Oct 10\n\nDifferential Transformer\n\nShort again.\n", encoding="utf-8"
    )
    fourth = ingest_paths(store, [page], listing_date=date(2024, 10, 10), now=datetime.now(UTC))
    assert fourth.as_dict()["papers_updated"] == 0 and fourth.papers_new == 0
    with store.session() as s:
        last = s.execute(select(Paper.__table__).where(Paper.id == "2410.05258")).one()
    assert last.abstract == longer and last.updated_at == later
    assert {**last._mapping, "abstract": after.abstract} == dict(after._mapping)


def test_every_field_is_stored_as_parsed(store: Store, tmp_path: Path) -> None:
    # many papers with every mix of missing fields: rows are written many to a statement,
    # grouped by which of their fields are missing
    rng = random.Random(7)
    entries = []
    for i in range(1500):
        upvotes = f"[-] {rng.randint(1, 300)}\n\n" if rng.random() < 0.5 else ""
        link = f"https://huggingface.co/papers/2411.{10000 + i}\n\n" if rng.random() < 0.5 else ""
        meta = ""
        if rng.random() < 0.6:
            who = f"  • {rng.randint(1, 9)} authors" if rng.random() < 0.5 else "  • Some Lab"
            count = f" {rng.randint(1, 20)}" if rng.random() < 0.3 else ""
            meta = f"{who}\n·\nNov {rng.randint(1, 28)}{count}\n\n"
        entries.append(f"{upvotes}{link}Paper Number {i}\n\nWhat paper {i} does.\n\n{meta}")
    page = tmp_path / "page.txt"
    page.write_text(HEADER + "Nov 30\n\n" + "".join(entries), encoding="utf-8")
    dump = parse_file(page, listing_date=date(2024, 11, 30))
    assert len(dump.papers) == 1500
    report = ingest_paths(store, [page], listing_date=date(2024, 11, 30), now=NOW)
    assert report.papers_new == 1500
    names = ("arxiv_id", "title", "abstract", "author_count", "organization", "published_on")
    names += ("upvotes", "comments", "links", "github_url")
    expected = {p.id: tuple(getattr(p, n) for n in names) for p in dump.papers}
    with store.session() as s:
        rows = s.execute(select(Paper.id, *(Paper.__table__.c[n] for n in names))).all()
        sightings = s.execute(
            select(Sighting.paper_id, Sighting.position, Sighting.upvotes, Sighting.comments)
        ).all()
    assert {r[0]: tuple(r[1:]) for r in rows} == expected
    assert sorted(sightings, key=lambda r: r[1]) == [
        (p.id, i, p.upvotes, p.comments) for i, p in enumerate(dump.papers, 1)
    ]
