"""Scoring against a small hand-made store, on both backends: candidates, exclusions,
explanations, Rocchio feedback, limits, chunking and streaming."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from digestbot.config import Config
from digestbot.scoring import iter_subscriber_chunks, rank_profile, score_subscribers
from digestbot.scoring.engine import Profiles, profile_parts
from digestbot.scoring.model import build_model, l2_rows, load_model
from digestbot.store import Digest, DigestItem, Paper, Store, Subscriber
from digestbot.store.subscribers import add_subscriber

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)

PAPERS = {
    "sae1": (
        "Sparse autoencoders find interpretable features in language models",
        "We train sparse autoencoders on residual stream activations and find "
        "monosemantic, interpretable features.",
    ),
    "sae2": (
        "Scaling sparse autoencoders to large transformers",
        "Sparse autoencoders with top-k activations scale to frontier transformers.",
    ),
    "mech": (
        "Circuits: mechanistic interpretability of attention heads",
        "Mechanistic interpretability reverse-engineers attention heads into circuits.",
    ),
    "sparse": (
        "Sparse attention for long documents",
        "A sparse attention pattern lets transformers read long documents.",
    ),
    "recsys": (
        "Graph neural networks for recommender systems",
        "Collaborative filtering with graph neural networks for recommendation.",
    ),
    "recsys2": (
        "Sequential recommendation with transformers",
        "Next-item recommender systems model user behaviour sequences.",
    ),
    "vision": (
        "Vision transformers for dense prediction",
        "A convolutional adapter helps vision transformers on segmentation.",
    ),
    "quant": (
        "Post-training quantization of large language models",
        "Low-bit weight quantization keeps accuracy of large language models.",
    ),
}


def add_papers(store: Store, papers: dict[str, tuple[str, str]]) -> Store:
    """Papers first seen one hour apart, the newest 1 hour before NOW."""
    with store.session() as s:
        for n, (pid, (title, abstract)) in enumerate(papers.items()):
            s.add(
                Paper(
                    id=pid,
                    title_key=pid,
                    title=title,
                    abstract=abstract,
                    upvotes=n,
                    first_seen_at=NOW - timedelta(hours=len(papers) - n),
                )
            )
    return store


@pytest.fixture
def papers(store: Store) -> Store:
    return add_papers(store, PAPERS)


def subscriber(store: Store, email: str = "a@example.org", **kw: object) -> Subscriber:
    with store.session() as s:
        return add_subscriber(s, email=email, **{"keywords": "sparse autoencoders", **kw})


def picks_of(store: Store, config: Config, *subs: Subscriber, now: datetime = NOW) -> list:
    return [sp.picks for sp in score_subscribers(store, subs, now=now, config=config)]


def ids(picks: list) -> list[str]:
    return [p.paper_id for p in picks]


def test_keywords_rank_phrase_matches_first_and_explain_them(papers: Store, config) -> None:
    sub = subscriber(papers, keywords="sparse autoencoders, mechanistic interpretability")
    [picks] = picks_of(papers, config, sub)
    assert set(ids(picks)[:3]) == {"sae1", "sae2", "mech"}
    # "sparse" alone matches no keyword: no padding with it by default, and below the
    # phrase matches when padding is allowed
    assert "sparse" not in ids(picks)
    [padded] = picks_of(papers, config.replace(scoring__require_match=False), sub)
    assert ids(padded).index("sparse") > 2
    assert next(p for p in padded if p.paper_id == "sparse").matched == ()
    why = {p.paper_id: p.matched for p in picks}
    assert why["sae1"] == ("sparse autoencoders",)
    assert why["mech"] == ("mechanistic interpretability",)
    assert all(p.matched for p in picks)
    assert all(p.similar_to is None for p in picks)
    assert [p.score for p in picks] == sorted((p.score for p in picks), reverse=True)
    assert "recsys" not in ids(picks)


def test_similar_to_names_the_liked_paper(papers: Store, config) -> None:
    sub = subscriber(papers, keywords="", liked=["recsys"])
    [picks] = picks_of(papers, config, sub)
    assert ids(picks)[0] == "recsys2"
    assert picks[0].similar_to == "recsys"
    assert picks[0].similar_title == PAPERS["recsys"][0]
    assert picks[0].why() == {
        "matched": [],
        "similar_to": "recsys",
        "similar_title": PAPERS["recsys"][0],
    }
    assert "recsys" not in ids(picks)  # a liked paper is not offered again


def test_rocchio_likes_and_dislikes_move_the_profile(papers: Store, config) -> None:
    plain = subscriber(papers, "plain@example.org", keywords="transformers")
    disliked = subscriber(
        papers, "disliked@example.org", keywords="transformers", disliked=["recsys2"]
    )
    base, down = picks_of(papers, config, plain, disliked)
    # disliking the sequential-recommendation paper drops it from the picks
    assert "recsys2" in ids(base) and "recsys2" not in ids(down)
    # the profile vector itself: a like pulls it towards the paper, a dislike pushes it away
    model = load_model(papers, title_weight=config["scoring.title_weight"])
    v, r = model.index["vision"], model.index["recsys2"]
    profiles = Profiles(
        keywords=[["transformers"]] * 3,
        liked=[[], [v], []],
        disliked=[[], [], [r]],
        start=np.zeros(3, dtype=np.int64),
        end=len(model.ids),
        ks=np.full(3, 10),
        min_scores=np.zeros(3, dtype=np.float32),
        excluded=[],
    )
    prof = l2_rows(profile_parts(model, profiles, config).raw())
    sim = (prof @ model.matrix.T).toarray()
    assert sim[1, v] > sim[0, v] + 0.2
    assert sim[2, r] < sim[0, r] - 0.05
    # the sae2 paper shares "transformers" with vision: it gains from the like as well
    assert sim[1, model.index["sae2"]] > 0


def test_liked_paper_moves_unrelated_topic_into_picks(papers: Store, config) -> None:
    only_kw = subscriber(papers, "k@example.org", keywords="quantization")
    with_like = subscriber(papers, "l@example.org", keywords="quantization", liked=["recsys"])
    before, after = picks_of(papers, config, only_kw, with_like)
    assert "recsys2" not in ids(before)
    assert "recsys2" in ids(after)
    assert next(p for p in after if p.paper_id == "recsys2").similar_to == "recsys"


def test_papers_already_sent_or_pending_are_excluded(papers: Store, config) -> None:
    sub = subscriber(papers, keywords="sparse autoencoders, mechanistic interpretability")
    other = subscriber(
        papers, "b@example.org", keywords="sparse autoencoders, mechanistic interpretability"
    )
    with papers.session() as s:
        for state, pid in (
            ("sent", "sae1"),
            ("queued", "sae2"),
            ("failed", "mech"),
            ("feed_only", "sparse"),
        ):
            d = Digest(
                subscriber_id=sub.id,
                period=f"{state}/daily",
                state=state,
                message_id=f"<{state}@x>",
                recipient=sub.email,
            )
            d.items.append(DigestItem(paper_id=pid, rank=1, score=0.5))
            s.add(d)
    # padding allowed, so that the "sparse" paper is a candidate at all
    mine, theirs = picks_of(papers, config.replace(scoring__require_match=False), sub, other)
    assert set(ids(theirs)) >= {"sae1", "sae2", "mech", "sparse"}
    assert not {"sae1", "sae2", "sparse"} & set(ids(mine))
    assert "mech" in ids(mine)  # a failed digest never reached the reader


def test_candidates_are_papers_since_the_last_digest(papers: Store, config) -> None:
    sub = subscriber(papers, keywords="sparse autoencoders, mechanistic interpretability")
    with papers.session() as s:
        s.get(Subscriber, sub.id).last_digest_at = NOW - timedelta(hours=7, minutes=30)
    [picks] = picks_of(papers, config, _reload(papers, sub.id))
    # sae1 was first seen 8 hours before NOW, before the last digest
    assert "sae1" not in ids(picks) and "sae2" in ids(picks)
    # a new subscriber draws on the last new_subscriber_days only
    newbie = subscriber(papers, "n@example.org")
    [none] = picks_of(papers, config, newbie, now=NOW + timedelta(days=8))
    assert none == []
    [some] = picks_of(papers, config, newbie, now=NOW + timedelta(days=6))
    assert ids(some)[:2] in (["sae1", "sae2"], ["sae2", "sae1"])
    # papers first seen after `now` are not candidates yet
    [early] = picks_of(papers, config, newbie, now=NOW - timedelta(hours=7, minutes=30))
    assert ids(early) == ["sae1"]


def _reload(store: Store, sub_id: int) -> Subscriber:
    with store.session() as s:
        return s.get(Subscriber, sub_id)


def test_min_score_then_max_items(papers: Store, config) -> None:
    wide = "sparse autoencoders, transformers, recommendation, quantization, vision"
    few = subscriber(papers, "few@example.org", keywords=wide, max_items=2)
    strict = subscriber(papers, "strict@example.org", keywords=wide, min_score=0.2)
    loose = subscriber(papers, "loose@example.org", keywords=wide)
    f, st, lo = picks_of(papers, config, few, strict, loose)
    assert len(f) == 2 and ids(f) == ids(lo)[:2]
    assert all(p.score >= 0.2 for p in st)
    assert ids(st) == [p.paper_id for p in lo if p.score >= 0.2]
    assert len(st) < len(lo)


def test_popularity_weight_is_off_by_default_and_reorders_when_on(papers: Store, config) -> None:
    sub = subscriber(papers, keywords="recommender systems, recommendation")
    [plain] = picks_of(papers, config, sub)
    [popular] = picks_of(papers, config.replace(scoring__popularity_weight=5.0), sub)
    [recent] = picks_of(papers, config.replace(scoring__recency_weight=5.0), sub)
    assert set(ids(plain)) == set(ids(popular)) == set(ids(recent))  # boosts add no papers
    # recsys2 has more upvotes and is newer than recsys
    assert ids(popular)[0] == "recsys2" and ids(recent)[0] == "recsys2"
    assert popular[0].score > plain[0].score


def test_chunks_give_the_same_picks_and_streaming_reads_in_chunks(papers: Store, config) -> None:
    subs = [
        subscriber(papers, f"s{i}@example.org", keywords=kw)
        for i, kw in enumerate(
            [
                "sparse autoencoders",
                "recommender systems",
                "vision transformers",
                "quantization",
                "attention heads",
                "long documents",
                "graph neural networks",
            ]
        )
    ]
    with papers.session() as s:
        s.get(Subscriber, subs[3].id).status = "unsubscribed"
    whole = [
        (x.subscriber_id, x.picks) for x in score_subscribers(papers, subs, now=NOW, config=config)
    ]
    one = [
        (x.subscriber_id, x.picks)
        for x in score_subscribers(
            papers, subs, now=NOW, config=config.replace(scoring__chunk_size=1)
        )
    ]
    assert whole == one
    chunks = list(iter_subscriber_chunks(papers, chunk_size=3))
    assert [len(c) for c in chunks] == [3, 3]  # the unsubscribed one is left out
    light = list(iter_subscriber_chunks(papers, chunk_size=4, light=True))
    assert [[r.id for r in c] for c in light] == [[1, 2, 3, 5], [6, 7]]
    streamed = [
        (x.subscriber_id, x.picks)
        for x in score_subscribers(papers, (r for c in light for r in c), now=NOW, config=config)
    ]
    assert streamed == [w for w in whole if w[0] != subs[3].id]
    by_id = list(iter_subscriber_chunks(papers, ids=[7, 4, 1], chunk_size=2))
    assert [[r.id for r in c] for c in by_id] == [[1, 4], [7]]


def test_chunks_are_ranked_side_by_side_in_order_and_stop_cleanly() -> None:
    import threading

    from digestbot.scoring.engine import in_order

    second_started = threading.Event()
    taken: list[int] = []

    def items():
        for i in range(6):
            taken.append(i)
            yield i

    def work(i: int) -> int:
        if i == 0:
            # the first chunk finishes only once the second runs beside it
            assert second_started.wait(10)
        if i == 1:
            second_started.set()
        if i == 4:
            raise ValueError("chunk 4")
        return i * 10

    results = in_order(work, items(), 2)
    assert next(results) == 0
    assert taken == [0, 1]  # no more read ahead than one chunk a thread
    assert [next(results) for _ in range(3)] == [10, 20, 30]
    with pytest.raises(ValueError, match="chunk 4"):
        next(results)
    # a consumer that stops early leaves no scoring thread behind
    early = in_order(lambda i: i, iter(range(100)), 2)
    assert next(early) == 0
    early.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("digestbot-scoring")]
    assert list(in_order(lambda i: -i, range(3), 1)) == [0, -1, -2]


def test_empty_store_and_profile_without_matches(store: Store, config) -> None:
    sub = subscriber(store)
    assert picks_of(store, config, sub) == [[]]
    assert rank_profile(store, keywords="anything", config=config) == []


def test_rank_profile_ranks_all_papers_and_checks_input(papers: Store, config) -> None:
    picks = rank_profile(papers, keywords="recommender systems", top=3, config=config)
    assert ids(picks)[:2] in (["recsys", "recsys2"], ["recsys2", "recsys"])
    assert len(picks) <= 3
    liked = rank_profile(papers, keywords="", liked=["sae1"], top=2, config=config)
    assert ids(liked)[0] == "sae2" and liked[0].similar_to == "sae1"
    from digestbot.errors import ScoringError

    with pytest.raises(ScoringError, match="unknown paper id 'nope'"):
        rank_profile(papers, keywords="x", liked=["nope"], config=config)
    with pytest.raises(ScoringError, match="give keywords or liked papers"):
        rank_profile(papers, keywords=" , ", config=config)


def test_the_model_is_deterministic(papers: Store) -> None:
    rows = [(pid, t, a, NOW, 0) for pid, (t, a) in PAPERS.items()]
    a = build_model(rows, title_weight=2.0)
    b = build_model(list(reversed(rows)), title_weight=2.0)
    assert a.vocabulary == b.vocabulary
    assert np.array_equal(a.matrix.toarray(), b.matrix.toarray())
    # the title counts more than the abstract
    title_only = build_model([("x", "alpha", "beta", NOW, 0)], title_weight=2.0)
    row = title_only.matrix.toarray()[0]
    assert row[title_only.vocabulary["alpha"]] > row[title_only.vocabulary["beta"]]


def test_the_shortlisting_product_equals_the_exact_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """top_papers keeps only each row's best while multiplying; masks and ties must come out
    exactly as scoring every pair and then cutting."""
    import scipy.sparse as sp

    from digestbot.scoring import engine
    from digestbot.scoring.engine import top_papers

    rng = np.random.default_rng(7)
    profiles = sp.random(400, 300, density=0.05, format="csr", random_state=1, dtype=np.float32)
    profiles.data -= 0.2  # some negative weights, as a dislike gives
    papers = sp.random(120, 300, density=0.1, format="csr", random_state=2, dtype=np.float32)
    ks = rng.integers(0, 8, 400)
    start = rng.choice([0, 30, 90, 119, 120], 400)
    min_scores = rng.choice([0.0, 0.0, 0.05], 400).astype(np.float32)
    pairs = np.unique(rng.integers(0, 400, 3000) * 120 + rng.integers(0, 120, 3000))
    # the readers' masks, the same for every path below
    masks: dict[str, Any] = {"start": start, "min_scores": min_scores, "banned": pairs}
    fast = top_papers(profiles, papers, ks, **masks)
    # a boost of zero takes the exact path and changes no score
    exact = top_papers(profiles, papers, ks, **masks, boost=np.zeros(120, np.float32))
    for a, b in zip(fast, exact, strict=True):
        assert np.allclose(a, b, atol=1e-6)
    assert fast[0][-1] > 300  # the test exercises real picks
    # no padding: only allowed pairs. This takes the blocked exact path (several blocks), so
    # it is checked against scoring every pair densely, by hand
    allowed = sp.random(400, 120, density=0.15, format="csr", random_state=3, dtype=np.float32)
    allowed.data[:] = 1.0
    monkeypatch.setattr(engine, "EXACT_BLOCK_ROWS", 64)
    fast = top_papers(profiles, papers, ks, **masks, allowed=allowed)
    dense = (profiles @ papers.T).toarray()
    ok = (allowed.toarray() > 0) & (dense > 0) & (np.arange(120)[None, :] >= start[:, None])
    ok &= dense >= min_scores[:, None]
    ok.flat[pairs] = False
    for r in range(400):
        cand = np.flatnonzero(ok[r])
        expected = sorted(cand, key=lambda j: (-dense[r, j], j))[: ks[r]]
        assert fast[1][fast[0][r] : fast[0][r + 1]].tolist() == expected, r
        assert np.allclose(fast[2][fast[0][r] : fast[0][r + 1]], dense[r, expected], atol=1e-6)
    assert fast[0][-1] > 100
    picked = np.repeat(np.arange(400), np.diff(fast[0]))
    assert (allowed[picked, fast[1]].A1 > 0).all()
    # fewer picks than k where fewer papers are allowed: the digest is not filled up
    assert (np.diff(fast[0]) < ks).sum() > 50


def test_topk_rows_matches_a_full_sort_of_each_row() -> None:
    import scipy.sparse as sp

    from digestbot.scoring import topk_rows

    rng = np.random.default_rng(0)
    # rows of very different lengths land in different padding buckets
    m = sp.random(300, 700, density=0.03, format="lil", random_state=3, dtype=np.float32)
    m[5, :] = 0
    m[6, :] = np.linspace(0.1, 1.0, 700, dtype=np.float32)
    m[7, :10] = 0.5  # ties: the lower column wins
    m = m.tocsr()
    m.eliminate_zeros()
    ks = rng.integers(0, 12, 300)
    indptr, cols, vals = topk_rows(m, ks)
    dense = m.toarray()
    for r in range(300):
        nz = np.flatnonzero(dense[r])
        expected = sorted(nz, key=lambda j: (-dense[r, j], j))[: ks[r]]
        assert cols[indptr[r] : indptr[r + 1]].tolist() == expected, r
        assert np.allclose(vals[indptr[r] : indptr[r + 1]], dense[r, expected])
