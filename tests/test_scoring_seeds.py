"""The seed listings as scoring sees them: loaded through the ingest stage when it is there,
else read by a small parser of the plain-text pages kept here for the scoring tests."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path

from digestbot.config import Config
from digestbot.scoring.picks import Pick
from digestbot.store import Paper, Store, Subscriber

from .conftest import SEEDS

_META = re.compile(
    r"^(new|subscribe|daily papers|get trending papers.*|byak and the research community|"
    r"[•·].*|·|[A-Z][a-z]{2} \d{1,2}(, \d{4})?( \d+)?)$",
    re.I,
)


def _title_key(title: str) -> str:
    norm = re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", title).casefold()).strip()
    return hashlib.sha256(norm.encode()).hexdigest()


def parse_seed_text(text: str) -> list[tuple[str, str]]:
    """(title, abstract) pairs: an abstract is a long paragraph right after a short one."""
    paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    paras = [p for p in paras if p and not _META.match(p)]
    out = []
    for before, para in zip(paras, paras[1:], strict=False):
        if len(para) >= 150 and 8 <= len(before) < 300:
            out.append((before, para))
    return out


def load_seeds(store: Store) -> int:
    """Put the seed papers in ``store``; returns how many papers it holds."""
    try:
        from digestbot.ingest import ingest_paths  # type: ignore[attr-defined]
    except ImportError:
        ingest_paths = None
    if ingest_paths is not None:
        ingest_paths(store, sorted(SEEDS.glob("*")))
    else:
        base = datetime(2026, 11, 1, tzinfo=UTC)
        with store.session() as session:
            seen: set[str] = set()
            for n, path in enumerate(sorted(SEEDS.glob("*.txt"))):
                for pos, (title, abstract) in enumerate(parse_seed_text(path.read_text())):
                    key = _title_key(title)
                    if key in seen:
                        continue
                    seen.add(key)
                    session.add(
                        Paper(
                            id="t" + key[:16],
                            title_key=key,
                            title=title,
                            abstract=abstract,
                            first_seen_at=base + timedelta(days=n, seconds=pos),
                        )
                    )
    with store.session() as session:
        return session.query(Paper).count()


def scored_in_one_chunk_and_alone(
    seeds: Store, keywords: list[str], config: Config
) -> tuple[list[list[Pick]], list[list[Pick]], list[Subscriber], datetime]:
    """Readers with these keywords scored together in one chunk, and one reader a chunk,
    just after the seeds were first seen (all of them new to the readers): (together,
    alone, the readers, that moment)."""
    from digestbot.scoring import load_model, score_subscribers
    from digestbot.store.subscribers import add_subscriber

    with seeds.session() as s:
        subs = [
            add_subscriber(s, email=f"r{i}@example.org", keywords=kw)
            for i, kw in enumerate(keywords)
        ]
    newest = float(load_model(seeds).first_seen.max())
    later = datetime.fromtimestamp(newest + 3600, tz=UTC)
    together = [x.picks for x in score_subscribers(seeds, subs, now=later, config=config)]
    alone = [
        x.picks
        for x in score_subscribers(
            seeds, subs, now=later, config=config.replace(scoring__chunk_size=1)
        )
    ]
    return together, alone, subs, later


def seed_titles() -> list[str]:
    titles = []
    for path in sorted(Path(SEEDS).glob("*.txt")):
        titles += [t for t, _ in parse_seed_text(path.read_text())]
    return titles


def test_seed_parser_finds_papers_with_titles_and_abstracts() -> None:
    pairs = parse_seed_text((SEEDS / "000_9d4c3e15241ae462.txt").read_text())
    assert pairs[0][0].startswith("ViT-CoMer: Vision Transformer")
    assert pairs[0][1].startswith("Although Vision Transformer (ViT)")
    assert all(not _META.match(t) for t, _ in pairs)
    assert len(pairs) > 40


def test_seeds_load_into_a_store(sqlite_store: Store) -> None:
    assert load_seeds(sqlite_store) > 200
