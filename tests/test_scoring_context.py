"""Issue 14's last flaw: one interest did not see the others. A reader of "vision transformer,
segmentation, object detection, 3D" got "Structural Text Segmentation of Legal Documents" at
#3; scoring.context (on by default) weighs a paper that one of several keywords
matches by how like it is to the papers the reader's other keywords match."""

from __future__ import annotations

import numpy as np
import pytest

from digestbot.config import default_config
from digestbot.scoring import rank_profile
from digestbot.scoring.context import CONTEXT_SIMILARITY, MIN_CONTEXT
from digestbot.scoring.engine import Profiles, rank
from digestbot.scoring.explain import explain
from digestbot.scoring.model import load_model
from digestbot.store import Store

from .test_scoring import add_papers
from .test_scoring_seeds import scored_in_one_chunk_and_alone

VISION = "vision transformer, segmentation, object detection, 3D"
LEGAL = "Structural Text Segmentation of Legal Documents"
ON = {"scoring__context": True}
OFF = {"scoring__context": False}

PAPERS = {
    "img-seg": (
        "Semantic segmentation of street images",
        "Pixel masks for street scenes: every pixel of the image is labelled.",
    ),
    "text-seg": (
        "Segmentation of legal text",
        "Legal contracts are split into clauses by a text segmentation model.",
    ),
    "vit": (
        "Vision transformers for street images",
        "Image patches of street scenes are fed to a vision transformer.",
    ),
    "other": (
        "Protein folding with language models",
        "Amino acid sequences are folded by a protein language model.",
    ),
}
BOTH = (
    "Vision transformers for semantic segmentation",
    "A vision transformer labels every pixel: segmentation of street images.",
)


@pytest.fixture
def small(store: Store) -> Store:
    return add_papers(store, PAPERS)


def titles(store: Store, keywords: str, **settings: object) -> list[str]:
    model = load_model(store)
    picks = rank_profile(store, keywords=keywords, top=10, config=default_config(**settings))
    return [model.titles[model.index[p.paper_id]] for p in picks]


def scores(store: Store, keywords: str, **settings: object) -> list[tuple[str, float]]:
    picks = rank_profile(store, keywords=keywords, top=10, config=default_config(**settings))
    return [(p.paper_id, p.score) for p in picks]


def test_the_issues_reader_no_longer_gets_legal_text_segmentation(seeds: Store) -> None:
    before = titles(seeds, VISION, **OFF)
    assert LEGAL in before[:3]  # the flaw, as the issue found it (no scoring.context)
    now = titles(seeds, VISION)  # the default install
    assert LEGAL not in now
    # image segmentation papers stay, ahead of where they were
    for image in ("LD-ZNet", "RESAnything"):
        assert any(t.startswith(image) for t in now[:5])


def test_a_paper_one_keyword_matches_is_weighed_by_its_likeness_to_the_others(
    small: Store,
) -> None:
    keywords = "vision transformer, segmentation"
    weighed = dict(scores(small, keywords, **ON))
    plain = dict(scores(small, keywords, **OFF))
    model = load_model(small)
    vector = {p: model.matrix[model.index[p]].toarray().ravel() for p in PAPERS}
    # each paper only "segmentation" matches is weighed by its cosine with the nearest paper
    # "vision transformer" matches (here the one, "vit"), as the module says
    weights = {}
    for paper in ("img-seg", "text-seg"):
        cosine = float(vector[paper] @ vector["vit"])
        weights[paper] = max(min(cosine / CONTEXT_SIMILARITY, 1.0) ** 2, MIN_CONTEXT)
        assert weighed[paper] == pytest.approx(plain[paper] * weights[paper], abs=1e-4)
        found = explain(small, paper, keywords=keywords, config=default_config(**ON))
        assert found.context == pytest.approx(weights[paper], abs=1e-4)
        assert found.context_similarity == pytest.approx(cosine, abs=1e-5)
        assert found.context_paper == PAPERS["vit"][0]
        assert found.score == pytest.approx(weighed[paper], abs=1e-4)
    # street images meet street images; legal text does not
    assert weights["img-seg"] > 0.5 > weights["text-seg"]
    assert plain["text-seg"] > plain["img-seg"] and weighed["text-seg"] < weighed["img-seg"]


def test_a_paper_two_keywords_match_keeps_full_weight(store: Store) -> None:
    add_papers(store, {"both": BOTH, "other": PAPERS["other"]})
    keywords = "vision transformer, segmentation"
    assert scores(store, keywords, **ON) == scores(store, keywords, **OFF) != []


def test_full_weight_without_other_interests_to_compare_with(small: Store) -> None:
    # one keyword: nothing to see it with
    assert scores(small, "segmentation", **ON) == scores(small, "segmentation", **OFF)
    # the other keyword matches no paper: no evidence either way (before, such a reader's
    # digest emptied when every weight fell to nothing)
    lonely = "segmentation, quantum chromodynamics"
    assert scores(small, lonely, **ON) == scores(small, lonely, **OFF) != []


def test_a_reader_is_weighed_alike_in_any_chunk(seeds: Store) -> None:
    keywords = [
        VISION,
        "quantization, model compression, pruning",
        "LLM agents, tool use",
        "recommender systems, click-through rate prediction",
        "speech",
    ]
    config = default_config(**ON)
    together, alone, _, _ = scored_in_one_chunk_and_alone(seeds, keywords, config)
    assert together == alone and all(together)


def test_the_other_keywords_papers_need_not_be_candidates(store: Store) -> None:
    # "vit" was seen before the reader's last digest: no longer a candidate, still what the
    # other keyword matches; the weights are those of a reader for whom it is a candidate
    add_papers(store, {p: PAPERS[p] for p in ("vit", "img-seg", "text-seg")})
    model = load_model(store)
    config = default_config(**ON)

    def ranked(start: int) -> dict[str, float]:
        profiles = Profiles(
            keywords=[["vision transformer", "segmentation"]],
            liked=[[]],
            disliked=[[]],
            start=np.array([start]),
            end=len(model.ids),
            ks=np.array([10]),
            min_scores=np.zeros(1, dtype=np.float32),
            excluded=[],
        )
        picks = rank(model, profiles, now=float(model.first_seen.max()), config=config)[0]
        return {p.paper_id: p.score for p in picks}

    later, all_of_them = ranked(model.index["img-seg"]), ranked(0)
    assert set(later) == {"img-seg", "text-seg"}
    assert later == {p: all_of_them[p] for p in later}
    plain = dict(scores(store, "vision transformer, segmentation", **OFF))
    assert later["text-seg"] < plain["text-seg"]


def _judged_readers() -> list[list[str]]:
    """Readers of several interests: the judged set's typed profiles, each alone and joined
    with the next one (so most readers have keywords from two fields)."""
    import json
    from pathlib import Path

    path = Path(__file__).parent / "data" / "relevance.json"
    profiles = json.loads(path.read_text())["profiles"]
    typed = [p["keywords"] for p in profiles if p.get("keywords")]
    joined = [f"{a}, {b}" for a, b in zip(typed, typed[1:] + typed[:1], strict=True)]
    return [[k.strip() for k in line.split(",")] for line in typed + joined]


def _weighed(seeds: Store, *, nearest: bool) -> tuple[object, object]:
    from digestbot.scoring.context import in_context, keyword_codes
    from digestbot.scoring.engine import profile_parts
    from digestbot.scoring.model import phrase_match_matrix

    model = load_model(seeds)
    readers = _judged_readers()
    n, papers = len(readers), len(model.ids)
    profiles = Profiles(
        keywords=readers,
        liked=[[] for _ in readers],
        disliked=[[] for _ in readers],
        start=np.zeros(n, dtype=np.int64),
        end=papers,
        ks=np.full(n, 10),
        min_scores=np.zeros(n, dtype=np.float32),
        excluded=[],
    )
    parts = profile_parts(model, profiles, default_config(**ON))
    phrases, typed = parts.phrases, parts.typed
    hits = phrase_match_matrix(model, phrases, 0, papers)
    codes = keyword_codes(typed, hits)
    allowed = (codes != 0).astype(np.float32)
    numbers = model.phrase_numbers(phrases)
    return in_context(
        model, phrases, numbers, typed, hits, codes, allowed, 0, papers, nearest=nearest
    )


def test_the_first_try_weighs_as_trying_every_other_keyword(seeds: Store) -> None:
    # a pair is first tried against its reader's broadest other keyword, and against all of
    # them only when that one falls short; explain tries all of them for every pair
    fast, found = _weighed(seeds, nearest=False)
    every, exhaustive = _weighed(seeds, nearest=True)
    assert np.array_equal(found.entries, exhaustive.entries)
    assert np.allclose(found.weights, exhaustive.weights)
    assert abs(fast - every).max() == 0
    # both ways are exercised: pairs settled by the first try, and pairs weighed down
    settled = found.similarity >= CONTEXT_SIMILARITY
    assert settled.sum() > 50 and (found.weights < 1).sum() > 50
    # a settled pair's similarity is its first try's: never above the highest
    assert (found.similarity <= exhaustive.similarity + 1e-6).all()
    assert np.allclose(found.similarity[~settled], exhaustive.similarity[~settled])


def test_a_full_memo_starts_a_new_table(seeds: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # past SUPPORT_MEMO_BYTES the kept cosines are dropped and computed again as asked, in a
    # new table (another thread may still read the old one): the weights do not change
    from digestbot.scoring import context

    _, roomy = _weighed(seeds, nearest=False)
    monkeypatch.setattr(context, "SUPPORT_MEMO_BYTES", 20 * 255 * 4)
    context._MEMO.clear()
    _, tight = _weighed(seeds, nearest=False)
    assert np.array_equal(roomy.entries, tight.entries)
    assert np.allclose(roomy.weights, tight.weights)


def test_close_papers_do_not_lift_a_weighed_match(seeds: Store) -> None:
    # with scoring.close_share, the legal paper (matched by "segmentation", weighed down by
    # the context) is not picked again at full score as a paper close to the best match
    close = {"scoring__close_share": 0.15}
    assert LEGAL in titles(seeds, VISION, **close, **OFF)
    assert LEGAL not in titles(seeds, VISION, **close, **ON)


def test_readers_weighed_in_blocks_are_weighed_alike(
    seeds: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a chunk of many allowed pairs is weighed a block of readers at a time, to bound the
    # memory it holds: the blocks change nothing
    from digestbot.scoring import context

    whole, at_once = _weighed(seeds, nearest=False)
    monkeypatch.setattr(context, "PAIRS_PER_BLOCK", 300)
    blocks, in_blocks = _weighed(seeds, nearest=False)
    assert whole.nnz > 4 * 300  # several blocks
    assert abs(whole - blocks).max() == 0
    assert np.array_equal(at_once.entries, in_blocks.entries)
    assert np.allclose(at_once.weights, in_blocks.weights)
    assert np.allclose(at_once.similarity, in_blocks.similarity)


def test_a_kept_row_is_found_again_by_the_phrases_number() -> None:
    # a keyword of one context paper has that paper's own row; a keyword of several has a
    # row computed once and kept under its phrase's number: asked again in another chunk's
    # order it is found, not computed again; two phrases of one chunk with one number (two
    # spellings read as one phrase) get one row
    import scipy.sparse as sp

    from digestbot.scoring.context import _Supports

    rng = np.random.default_rng(7)
    sim = rng.random((6, 5)).astype(np.float32)
    sets = [[0, 2], [1], [0, 2, 4], [3], [0, 2]]  # keywords x the context papers they match
    numbers = np.array([10, 3, 7, 2, 10])

    def matrix(rows: list[list[int]]) -> sp.csr_matrix:
        return sp.csr_matrix(
            (
                np.ones(sum(map(len, rows)), np.float32),
                [p for s in rows for p in s],
                np.cumsum([0, *map(len, rows)]),
            ),
            shape=(len(rows), 6),
        )

    held = _Supports((0, 0, 6), np.vstack([np.full((1, 5), -1, np.float32), sim]), 6)
    everyone = np.arange(len(sets))
    known = matrix(sets)
    rows, table, _ = held.rows_of(everyone, known, numbers, np.diff(known.indptr))
    for k, papers in enumerate(sets):
        assert np.array_equal(table[rows[k]], sim[papers].max(axis=0)), k
    assert rows[1] == 1 + 1 and rows[3] == 1 + 3  # the papers' own rows
    assert rows[0] == rows[4] and len({*rows[:4].tolist()}) == 4
    assert held.used == 1 + 6 + 2  # row 0, the papers', and one row per number of several
    # asked again, in another chunk's order and numbering of its phrases: found, nothing
    # computed, and a phrase not asked for gets row 0
    order = [2, 3, 0]
    known = matrix([sets[k] for k in order])
    again, _, _ = held.rows_of(np.array([0, 2]), known, numbers[order], np.diff(known.indptr))
    assert held.used == 9
    assert again.tolist() == [rows[2], 0, rows[0]]


def test_a_phrase_has_one_number_in_every_chunk_and_thread(seeds: Store) -> None:
    from concurrent.futures import ThreadPoolExecutor

    model = load_model(seeds)
    words = [f"topic {i}" for i in range(2000)]
    first = model.phrase_numbers(words[:1000])
    with ThreadPoolExecutor(4) as pool:
        asked = list(pool.map(model.phrase_numbers, [words[k::4] for k in range(4)] * 3))
    seen: dict[str, int] = {}
    for k, got in enumerate(asked):
        for word, number in zip(words[k % 4 :: 4], got.tolist(), strict=True):
            assert seen.setdefault(word, number) == number, word
    assert len(set(seen.values())) == len(words)  # distinct phrases, distinct numbers
    assert [seen[w] for w in words[:1000]] == first.tolist()


def test_forgotten_phrases_never_get_a_number_again(
    seeds: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a long-lived process meets ever new phrases: past PHRASE_MEMO they are forgotten, and
    # a number once given is never given to another phrase (its kept row would be wrong)
    from digestbot.scoring import model as paper_model

    monkeypatch.setattr(paper_model, "PHRASE_MEMO", 5)
    model = load_model(seeds)
    given: dict[int, str] = {}

    def numbered(words: list[str]) -> list[int]:
        numbers = model.phrase_numbers(words).tolist()
        for word, number in zip(words, numbers, strict=True):
            assert given.setdefault(number, word) == word, (word, given[number])
        return numbers

    first = numbered(["shared"])[0]
    assert numbered(["shared"]) == [first]  # remembered while there is room
    for k in range(3):
        numbered([f"topic {k} {i}" for i in range(5)])
    # forgotten past the bound, and numbered anew, with a number no phrase had
    assert numbered(["shared"]) != [first]
