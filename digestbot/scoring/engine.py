"""Scoring subscribers: one sparse product per chunk of subscribers, masks for what each
may not get, top k per row, and the reasons for each pick.

Nothing here loops over subscriber x paper pairs: candidates are cut with array masks on the
product's non-zeros; Python loops run over subscribers, their keywords, and their picks.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp
from sparse_dot_topn import sp_matmul_topn
from sqlalchemy import select

from ..config import Config
from ..errors import ScoringError
from ..store import Digest, DigestItem, Feedback, Store
from .context import in_context, keyword_codes
from .model import (
    PaperModel,
    keyword_matrix,
    l2_rows,
    load_model,
    near_words,
    pair_values,
    phrase_match_matrix,
    shared_terms,
    strongest_terms,
)
from .picks import Pick, SubscriberPicks
from .semantic import Fusion, fused, fusion
from .semantic import attach as attach_embeddings
from .topk import topk_rows

# a paper in a digest in one of these states is not picked for its reader again: it was
# sent, or it is on its way (taken even before the server accepted it)
SHOWN_STATES = ("sent", "queued", "sending", "retry", "feed_only")
RECENCY_HALF_LIFE_DAYS = 3.0
T = TypeVar("T")
R = TypeVar("R")
# with scoring.require_match, a paper no keyword matches needs at least this cosine
# similarity to one the reader liked (about a paper's fifth-nearest neighbour in the seeds)
LIKED_MIN_SIMILARITY = 0.05


@dataclass
class Profiles:
    """What scoring needs to know about a batch of readers, as arrays where it can."""

    keywords: list[list[str]]
    liked: list[list[int]]  # model row numbers
    disliked: list[list[int]]
    start: np.ndarray  # first model row each reader may get
    end: int  # model rows from here on are too new (after `now`)
    ks: np.ndarray  # max items
    min_scores: np.ndarray
    excluded: list[tuple[int, int]]  # (reader row, model row) never to pick


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def in_order(fn: Callable[[T], R], items: Iterable[T], workers: int | None) -> Iterator[R]:
    """``map(fn, items)`` on up to ``workers`` threads, results in order, with at most
    ``workers`` items taken ahead of the one consumed: how chunks of readers are scored.

    Whole chunks go to the threads, not parts of one: scipy's products release the GIL, and
    chunks started apart overlap one's products with the other's numpy and Python. Two
    halves of a 2,000-reader chunk started together gained nothing on two cores (1.10 against
    1.14 s for 300,000 readers), whole chunks 1.8x. ``items`` is read in the caller's thread
    (it may hold database reads)."""
    if not workers or workers <= 1:
        yield from map(fn, items)
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="digestbot-scoring")
    try:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        # a consumer that stops early (a daemon's SIGTERM) waits only for running chunks
        pool.shutdown(wait=True, cancel_futures=True)


def _incidence(lists: Sequence[Sequence[int]], n_cols: int, *, mean: bool) -> sp.csr_matrix:
    lengths = np.array([len(x) for x in lists], dtype=np.int64)
    indptr = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    cols = np.fromiter((c for x in lists for c in x), dtype=np.int64, count=int(indptr[-1]))
    data = np.ones(len(cols), dtype=np.float32)
    if mean and len(cols):
        data /= np.repeat(lengths, lengths).astype(np.float32)
    mat = sp.csr_matrix((data, cols, indptr), shape=(len(lists), n_cols))
    mat.sum_duplicates()
    return mat


@dataclass
class ProfileParts:
    """A batch of readers' profile before it is put together (:meth:`raw`)."""

    keywords: sp.csr_matrix  # readers x terms, rows L2-normalised
    liked: sp.csr_matrix | None  # liked_weight x centroid of liked papers
    disliked: sp.csr_matrix | None  # disliked_weight x centroid of disliked papers
    phrases: list[str]  # distinct phrases, misspellings read as the papers' words
    typed: sp.csr_matrix  # reader x phrase, data = 1 + the keyword's position

    def raw(self) -> sp.csr_matrix:
        """Rocchio: keywords + liked_weight * centroid(liked) - disliked_weight *
        centroid(disliked), before its rows are L2-normalised."""
        out = self.keywords
        if self.liked is not None:
            out = out + self.liked
        if self.disliked is not None:
            out = out - self.disliked
        return out.tocsr()


def profile_parts(model: PaperModel, profiles: Profiles, config: Config) -> ProfileParts:
    """Keywords, liked and disliked centroids of each reader, and the phrases they typed."""
    phrase_ids: dict[str, int] = {}
    indptr, cols, pos = [0], [], []
    for words in profiles.keywords:
        for i, phrase in enumerate(words):
            cols.append(phrase_ids.setdefault(phrase.casefold(), len(phrase_ids)))
            pos.append(i + 1)
        indptr.append(len(cols))
    # a misspelt word is read as the closest word the papers use ("learnig" -> "learning")
    phrases = [model.correct(p)[0] for p in phrase_ids]
    typed = sp.csr_matrix(
        (np.asarray(pos, np.float32), np.asarray(cols, np.int64), np.asarray(indptr)),
        shape=(len(profiles.keywords), len(phrases)),
    )
    # each phrase counts alike, however many words it has
    keywords = l2_rows(_binary(typed) @ keyword_matrix(model, phrases))
    n_papers = model.matrix.shape[0]
    liked = disliked = None
    if any(profiles.liked):
        centroid = _incidence(profiles.liked, n_papers, mean=True) @ model.matrix
        liked = config["scoring.liked_weight"] * centroid
    if any(profiles.disliked):
        centroid = _incidence(profiles.disliked, n_papers, mean=True) @ model.matrix
        disliked = config["scoring.disliked_weight"] * centroid
    return ProfileParts(keywords, liked, disliked, phrases, typed)


def _boosts(model: PaperModel, lo: int, hi: int, now: float, config: Config) -> np.ndarray | None:
    """Optional popularity and recency terms, per candidate paper, in [0, weight]."""
    w_pop, w_rec = config["scoring.popularity_weight"], config["scoring.recency_weight"]
    if not w_pop and not w_rec:
        return None
    boost = np.zeros(hi - lo, dtype=np.float32)
    if w_pop:
        votes = np.log1p(np.maximum(model.upvotes[lo:hi], 0))
        top = votes.max(initial=0.0)
        if top > 0:
            boost += (w_pop * votes / top).astype(np.float32)
    if w_rec:
        age_days = np.maximum(now - model.first_seen[lo:hi], 0) / 86400.0
        boost += (w_rec * np.exp2(-age_days / RECENCY_HALF_LIFE_DAYS)).astype(np.float32)
    return boost


def _shortlisted(
    profiles: sp.csr_matrix,
    papers: sp.csr_matrix,
    ks: np.ndarray,
    start: np.ndarray,
    min_scores: np.ndarray | None,
    banned: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`top_papers` without boosts or masks: sparse_dot_topn keeps each row's best few
    while it multiplies, one product per distinct ``start`` (readers whose last digest fell
    between the same two dumps share one), with room for each row's banned papers."""
    n_rows, n_papers = profiles.shape[0], papers.shape[0]
    banned_per_row = np.zeros(n_rows, dtype=np.int64)
    if banned is not None and len(banned):
        np.add.at(banned_per_row, banned // max(n_papers, 1), 1)
    parts_r, parts_c, parts_v = [], [], []
    starts, group = np.unique(start, return_inverse=True)
    for g, first in enumerate(starts.tolist()):
        if first >= n_papers:
            continue
        rows = np.flatnonzero(group == g)
        top = int((ks[rows] + banned_per_row[rows]).max())
        if top <= 0:
            continue
        found = sp_matmul_topn(
            profiles[rows],
            papers[first:].T.tocsr(),
            top_n=top,
            threshold=0.0,
        )
        parts_r.append(rows[np.repeat(np.arange(len(rows)), np.diff(found.indptr))])
        parts_c.append(found.indices.astype(np.int64) + first)
        parts_v.append(found.data)
    if not parts_r:
        return topk_rows(sp.csr_matrix((n_rows, n_papers), dtype=np.float32), ks)
    rows, cols, vals = np.concatenate(parts_r), np.concatenate(parts_c), np.concatenate(parts_v)
    keep = np.ones(len(rows), dtype=bool)
    if min_scores is not None:
        keep &= vals >= min_scores[rows]
    if banned is not None and len(banned):
        keep &= ~np.isin(rows * n_papers + cols, banned)
    shortlist = sp.csr_matrix(
        (vals[keep], (rows[keep], cols[keep])), shape=(n_rows, n_papers), dtype=np.float32
    )
    return topk_rows(shortlist, ks)


# rows per block of the exact path: a block's full product (about a fifth of its pairs are
# non-zero in the synthetic benchmark) stays in the tens of MB
EXACT_BLOCK_ROWS = 8192


def top_papers(
    profiles: sp.csr_matrix,
    papers: sp.csr_matrix,
    ks: int | np.ndarray,
    *,
    start: np.ndarray | None = None,
    min_scores: np.ndarray | None = None,
    banned: np.ndarray | None = None,
    boost: np.ndarray | None = None,
    allowed: sp.csr_matrix | None = None,
    close_share: float = 0.0,
    near: sp.csr_matrix | None = None,
    feedback: PseudoFeedback | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The core: profiles x papers, masks, and the top k per row.

    ``start[r]``: the first paper row reader r may get; ``banned``: sorted keys
    ``r * n_papers + paper`` never to pick; ``boost``: added to positive scores per paper;
    ``allowed``: if given, rows x papers, the weight of each pair the reader may get (no
    padding: a keyword matches it or it is like a liked paper), which multiplies its score: 1,
    or less under scoring.context (see context.py); ``close_share``: with ``allowed``, a paper
    not allowed but in ``near`` (rows x papers: it shares a topical word with the reader's
    keywords) may still be picked when it scores at least this share of the row's best
    allowed paper (a row with no allowed paper gets nothing); ``feedback``:
    each row's scores become those of its profile with its feedback terms added
    (:func:`feedback_vectors`), computed from the first product in the same block.
    Returns ``(indptr, paper_cols, scores)`` as from :func:`topk_rows`; the result is exactly
    that of scoring every pair, whichever of the two ways below computes it.

    Without boosts or ``allowed``, the product keeps only each row's best few while it
    multiplies (:func:`_shortlisted`). With ``allowed`` (the default, scoring.require_match)
    a reader's best papers overall are mostly not allowed (a few matched papers among
    hundreds that share a word), so a shortlist would have to be scored again; instead every
    pair is scored, then masked: boosts reorder papers after the product, so every positive
    score is kept first; ``allowed`` is applied as an element-wise product (a merge of sorted
    rows, no search) before any other mask, so what follows sees few non-zeros. Rows go in
    blocks of EXACT_BLOCK_ROWS: a block's full product is freed once its top k is taken, so
    memory stays bounded by the block. One call runs on one thread: chunks of readers are
    scored side by side (:func:`in_order`).
    """
    n_rows, n_papers = profiles.shape[0], papers.shape[0]
    ks = np.broadcast_to(np.asarray(ks, dtype=np.int64), (n_rows,))
    start = np.zeros(n_rows, dtype=np.int64) if start is None else np.asarray(start)
    if boost is None and allowed is None and feedback is None:
        return _shortlisted(profiles, papers, ks, start, min_scores, banned)
    profiles = profiles.tocsr()
    paper_terms = papers.T.tocsr()
    mask = None if allowed is None else allowed.tocsr()
    banned_keys = banned if banned is not None else np.zeros(0, np.int64)
    if near is not None:
        near = _binary(near)
        if mask is not None:
            # an allowed pair keeps its weight: it is not picked again as a close one
            near = (near - near.multiply(_binary(mask))).tocsr()
            near.eliminate_zeros()

    def block(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scores = (profiles[lo:hi] @ paper_terms).tocsr()
        if feedback is not None:
            scores = _with_feedback_scores(feedback, profiles, scores, paper_terms, lo, hi)
        if mask is not None and near is not None and close_share > 0:
            # allowed pairs, and near pairs close to the row's best allowed one: both are few
            # of the product's non-zeros, so each is cut out first
            matched = scores.multiply(mask[lo:hi]).tocsr()
            best = matched.max(axis=1).toarray().ravel()
            close = scores.multiply(near[lo:hi]).tocsr()
            floor = np.repeat(close_share * best, np.diff(close.indptr))
            close.data = np.where((close.data >= floor) & (floor > 0), close.data, 0)
            close.eliminate_zeros()
            scores = close.maximum(matched).tocsr()
            scores.eliminate_zeros()
        elif mask is not None:
            scores = scores.multiply(mask[lo:hi]).tocsr()
            scores.eliminate_zeros()
        rows = np.repeat(np.arange(lo, hi), np.diff(scores.indptr))
        cols = scores.indices.astype(np.int64)
        if boost is not None:
            scores.data += boost[cols] * (scores.data > 0)  # boosts never make a match
        keep = (scores.data > 0) & (cols >= start[rows])
        if min_scores is not None:
            keep &= scores.data >= min_scores[rows]
        if len(banned_keys):
            b_lo, b_hi = np.searchsorted(banned_keys, [lo * n_papers, hi * n_papers])
            if b_hi > b_lo:
                keep &= ~np.isin(rows * n_papers + cols, banned_keys[b_lo:b_hi])
        scores.data = np.where(keep, scores.data, 0).astype(scores.dtype)
        scores.eliminate_zeros()
        return topk_rows(scores, ks[lo:hi])

    if n_rows == 0:
        return topk_rows(sp.csr_matrix((0, n_papers), dtype=np.float32), ks)
    edges = list(range(0, n_rows, EXACT_BLOCK_ROWS)) + [n_rows]
    parts = [block(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    counts = np.concatenate([np.diff(p[0]) for p in parts])
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


def rank(model: PaperModel, profiles: Profiles, *, now: float, config: Config) -> list[list[Pick]]:
    """Picks for each reader of ``profiles``, best first."""
    n = len(profiles.keywords)
    lo = int(profiles.start.min(initial=profiles.end)) if n else 0
    hi = profiles.end
    if n == 0 or lo >= hi or model.n_terms == 0:
        return [[] for _ in range(n)]
    parts = profile_parts(model, profiles, config)
    profile, phrases, typed = l2_rows(parts.raw()), parts.phrases, parts.typed
    hits = phrase_match_matrix(model, phrases, lo, hi) if phrases else None
    codes = keyword_codes(typed, hits) if hits is not None else None
    allowed = None
    if config["scoring.require_match"]:
        allowed = _allowed(model, profiles.liked, codes, lo, hi)
    # scoring.semantic: the embedding part joins the same product (see semantic.py)
    meaning = fusion(model, profiles.keywords, profiles.liked, profiles.disliked, lo, hi, config)
    candidates = model.matrix[lo:hi]
    if meaning is not None:
        profile, candidates = fused(meaning, profile, candidates)
        if allowed is not None:
            allowed = meaning.allowed(allowed)
    if allowed is not None and hits is not None and codes is not None and config["scoring.context"]:
        numbers = model.phrase_numbers(phrases)
        allowed, _ = in_context(model, phrases, numbers, typed, hits, codes, allowed, lo, hi)
    feedback = None
    if config["scoring.feedback_weight"] and (phrases or any(profiles.liked)):
        matched = allowed if allowed is not None else _allowed(model, profiles.liked, codes, lo, hi)
        feedback = PseudoFeedback(
            model=model,
            lo=lo,
            matched=_binary(matched),
            typed=typed,
            hits=hits,
            keyword_terms=typed @ keyword_matrix(model, phrases) if phrases else None,
            papers=config["scoring.feedback_papers"],
            terms=config["scoring.feedback_terms"],
            weight=config["scoring.feedback_weight"],
        )
    banned = None
    if profiles.excluded:
        pairs = np.asarray(profiles.excluded, dtype=np.int64)
        inside = (pairs[:, 1] >= lo) & (pairs[:, 1] < hi)
        banned = np.unique(pairs[inside, 0] * (hi - lo) + pairs[inside, 1] - lo)
    indptr, pick_cols, pick_scores = top_papers(
        profile,
        candidates,
        profiles.ks,
        start=profiles.start - lo,
        min_scores=profiles.min_scores,
        banned=banned,
        boost=_boosts(model, lo, hi, now, config),
        allowed=allowed,
        close_share=config["scoring.close_share"],
        near=_near(model, phrases, typed, lo, hi, meaning, config),
        feedback=feedback,
    )
    pick_rows = np.repeat(np.arange(n), np.diff(indptr))
    matched = _matched(hits, typed, profiles.keywords, pick_rows, pick_cols)
    similar = _similar(model, profiles.liked, pick_rows, pick_cols + lo)
    ids = model.ids[pick_cols + lo].tolist()
    scores = np.round(pick_scores, 4).tolist()
    if (similar >= 0).any():
        sims = similar.tolist()
        similar_ids = [str(model.ids[x]) if x >= 0 else None for x in sims]
        similar_titles = [model.titles[x] if x >= 0 else None for x in sims]
    else:
        similar_ids = similar_titles = [None] * len(ids)
    respelled = _respelled(model, profiles.keywords, matched)
    # one Pick per pick, made by map (no per-pick Python body), then sliced per reader
    for_meaning = [False] * len(ids)
    if meaning is not None and len(ids):
        # picked for meaning: no keyword in it, and semantically far above the reader's mean
        close = meaning.z(pick_rows, pick_cols) >= meaning.min_z
        for_meaning = [bool(c) and not m for c, m in zip(close.tolist(), matched, strict=True)]
    picks = list(
        map(Pick, ids, scores, matched, similar_ids, similar_titles, respelled, for_meaning)
    )
    ends = indptr.tolist()
    return [picks[a:b] for a, b in zip(ends[:-1], ends[1:], strict=True)]


@dataclass
class PseudoFeedback:
    """What pseudo-relevance feedback needs for a batch of readers and papers[lo:hi]."""

    model: PaperModel
    lo: int
    matched: sp.csr_matrix  # readers x candidates: the pairs that count as matches
    typed: sp.csr_matrix | None  # readers x phrases, and phrases x candidates matched
    hits: sp.csr_matrix | None
    keyword_terms: sp.csr_matrix | None  # readers x terms their keywords weigh
    papers: int  # scoring.feedback_papers
    terms: int  # scoring.feedback_terms
    weight: float  # scoring.feedback_weight


def feedback_vectors(fb: PseudoFeedback, scores: sp.csr_matrix, r0: int, r1: int) -> sp.csr_matrix:
    """Pseudo-relevance feedback, Rocchio/RM3-style, for readers r0:r1 at once, from their
    ``scores`` against the candidates: each reader's ``fb.papers`` best matching candidates
    are taken as if liked, each keyword's share of them weighing alike (so that one interest
    with many matches does not drown the others), and the ``fb.terms`` terms most of them
    share (:func:`shared_terms`), other than the reader's own keyword terms, make the rows
    (L2-normalised; all zero for a reader without two best matches)."""
    model = fb.model
    matched = scores.multiply(fb.matched[r0:r1]).tocsr()
    matched.eliminate_zeros()
    indptr, cols, _ = topk_rows(matched, fb.papers)
    shape = (r1 - r0, model.matrix.shape[0])
    counts = np.diff(indptr)
    weights = np.divide(1.0, counts, out=np.zeros(len(counts)), where=counts > 0)
    best = sp.csr_matrix(
        (np.repeat(weights, counts).astype(np.float32), cols + fb.lo, indptr), shape
    )
    typed = None if fb.typed is None else fb.typed[r0:r1]
    balance = _phrase_balanced((typed, fb.hits), indptr, cols)
    shared = shared_terms(model, best, sp.csr_matrix((balance, cols + fb.lo, indptr), shape))
    if fb.keyword_terms is not None:
        # only terms the keywords do not weigh: a word they weigh little on purpose ("text"
        # of "text-to-speech") keeps its small share
        shared = (shared - shared.multiply(_binary(fb.keyword_terms[r0:r1]))).tocsr()
        shared.eliminate_zeros()
    return l2_rows(strongest_terms(shared, fb.terms))


def _with_feedback_scores(
    fb: PseudoFeedback,
    profiles: sp.csr_matrix,
    scores: sp.csr_matrix,
    paper_terms: sp.csr_matrix,
    r0: int,
    r1: int,
) -> sp.csr_matrix:
    """The scores of the profiles with their feedback rows added at ``fb.weight`` and the
    sum L2-normalised, from the first scores and one more product with the (short) feedback
    rows: the same as scoring the new profiles, without building them."""
    found = feedback_vectors(fb, scores, r0, r1)
    w = fb.weight
    rows = profiles[r0:r1]
    cross = np.asarray(rows.multiply(found).sum(axis=1)).ravel()
    square = np.asarray(rows.multiply(rows).sum(axis=1)).ravel()
    has = (np.diff(found.indptr) > 0).astype(np.float64)
    norm = np.sqrt(np.maximum(square + has * (w * w + 2 * w * cross), 0))
    scale = np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 0)
    extra = (found @ paper_terms).tocsr()
    return (sp.diags(scale.astype(np.float32)) @ (scores + w * extra)).tocsr()


def _phrase_balanced(
    typed_hits: tuple[sp.csr_matrix | None, sp.csr_matrix | None],
    indptr: np.ndarray,
    cols: np.ndarray,
) -> np.ndarray:
    """Weights of each reader's feedback papers (``indptr``/``cols``, candidate columns) such
    that every keyword of theirs that some of these papers match weighs alike, split among its
    papers; a paper no keyword matches (like a liked one) counts as a keyword of its own.
    Each reader's weights sum to 1."""
    typed, hits = typed_hits
    n = len(cols)
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    if typed is None or hits is None or n == 0:
        own = np.ones(n, dtype=np.float32)
    else:
        # pick x phrase: the phrases of the pick's reader that the pick matches
        found = _binary(typed)[rows].multiply(hits.T.tocsr()[cols]).tocsr()
        found.data = (found.data > 0).astype(np.float32)
        found.eliminate_zeros()
        to_reader = sp.csr_matrix(
            (np.ones(n, np.float32), np.arange(n), np.asarray(indptr)), shape=(len(indptr) - 1, n)
        )
        per_phrase = (to_reader @ found).tocsr()[rows]  # picks of the reader per phrase
        per_phrase.data = 1.0 / per_phrase.data
        share = found.multiply(per_phrase).tocsr()
        own = np.asarray(share.sum(axis=1)).ravel().astype(np.float32)
        own[np.diff(found.indptr) == 0] = 1.0
    totals = np.bincount(rows, weights=own, minlength=len(indptr) - 1)
    return (own / np.maximum(totals[rows], 1e-12)).astype(np.float32)


def _near(
    model: PaperModel,
    phrases: list[str],
    typed: sp.csr_matrix,
    lo: int,
    hi: int,
    meaning: Fusion | None,
    config: Config,
) -> sp.csr_matrix | None:
    """With scoring.close_share, readers x papers[lo:hi], non-zero where the paper has a
    topical word of the reader's keywords (a content word in at most NEAR_MAX_DF of the
    papers): where a paper no keyword matches may still be close enough to be picked; with
    scoring.semantic, none whose meaning is under the floor."""
    if not config["scoring.close_share"] or not phrases:
        return None
    near = (_binary(typed) @ near_words(model, phrases) @ model.binary[lo:hi].T).tocsr()
    return near if meaning is None else meaning.within_floor(near)


def _binary(matrix: sp.csr_matrix) -> sp.csr_matrix:
    out = matrix.tocsr().copy()
    out.data = (out.data != 0).astype(np.float32)
    out.eliminate_zeros()
    return out


def _respelled(
    model: PaperModel, keywords: list[list[str]], matched: list[tuple[str, ...]]
) -> list[tuple[tuple[str, str], ...]]:
    """For each pick, the misspelt words of its matched keywords and what they were read as."""
    phrases = dict.fromkeys(p.casefold() for words in keywords for p in words)
    fixes = {p: found for p in phrases if (found := model.correct(p)[1])}
    if not fixes:
        return [()] * len(matched)
    return [tuple(f for m in words for f in fixes.get(m.casefold(), ())) for words in matched]


def _allowed(
    model: PaperModel,
    liked: list[list[int]],
    codes: sp.csr_matrix | None,
    lo: int,
    hi: int,
) -> sp.csr_matrix:
    """readers x papers[lo:hi], 1 where a keyword of the reader matches the paper (non-zero
    in ``codes``, from :func:`keyword_codes`) or the paper is at least LIKED_MIN_SIMILARITY
    like one the reader liked."""
    allowed = sp.csr_matrix((len(liked), hi - lo), dtype=np.float32) if codes is None else codes
    if any(liked):
        likes = _incidence(liked, model.matrix.shape[0], mean=False)
        used = np.unique(likes.indices)
        near = (model.matrix[used] @ model.matrix[lo:hi].T).tocsr()
        near.data = (near.data >= LIKED_MIN_SIMILARITY).astype(np.float32)
        near.eliminate_zeros()
        allowed = allowed + likes[:, used] @ near
    return _binary(allowed)


def _per_pick(indptr: np.ndarray, pick_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The entries of each pick's row of a CSR matrix (``indptr``), laid out one pick after
    another: the pick each belongs to, and its place among the matrix's entries."""
    per_pick = np.diff(indptr)[pick_rows]
    pick_of = np.repeat(np.arange(len(pick_rows)), per_pick)
    offsets = np.repeat(indptr[pick_rows] - np.cumsum(per_pick) + per_pick, per_pick)
    return pick_of, offsets + np.arange(len(pick_of))


def _matched(
    hits: sp.csr_matrix | None,
    typed: sp.csr_matrix,
    keywords: list[list[str]],
    pick_rows: np.ndarray,
    pick_cols: np.ndarray,
) -> list[tuple[str, ...]]:
    """For each pick, the reader's keywords found in the paper, in the reader's order."""
    n_picks = len(pick_rows)
    if hits is None or not n_picks:
        return [()] * n_picks
    # typed's entries are the readers' keywords in order, so ``flat`` also indexes the
    # flattened keyword lists
    pick_of, flat = _per_pick(typed.indptr, pick_rows)
    phrase = typed.indices[flat]
    found = pair_values(hits, phrase, pick_cols[pick_of]) > 0
    all_words = [w for words in keywords for w in words]
    words = iter([all_words[j] for j in flat[found].tolist()])
    counts = np.bincount(pick_of[found], minlength=n_picks).tolist()
    return [tuple(islice(words, c)) if c else () for c in counts]


def _similar(
    model: PaperModel, liked: list[list[int]], pick_rows: np.ndarray, pick_papers: np.ndarray
) -> np.ndarray:
    """For each pick, the model row of the reader's liked paper most like it, or -1."""
    best = np.full(len(pick_rows), -1, dtype=np.int64)
    if not any(liked) or not len(pick_rows):
        return best
    likes = _incidence(liked, model.matrix.shape[0], mean=False)
    pick_of, flat = _per_pick(likes.indptr, pick_rows)
    if not len(pick_of):
        return best
    liked_row = likes.indices[flat]
    # one dot product per (pick, liked paper of its reader) pair, nothing more: a product
    # of every pick by every distinct liked paper of the chunk grew with how many papers
    # the chunk's readers liked (4.6 GB for 20,000 readers liking from a pool of 1,000)
    pairs = model.matrix[pick_papers[pick_of]].multiply(model.matrix[liked_row])
    sim = np.asarray(pairs.sum(axis=1)).ravel()
    order = np.lexsort((liked_row, -sim, pick_of))
    first = order[np.r_[True, pick_of[order][1:] != pick_of[order][:-1]]]
    first = first[sim[first] > 0]
    best[pick_of[first]] = liked_row[first]
    return best


# --- from the store ---------------------------------------------------------------------------


def _timestamp(when: datetime) -> float:
    if when.tzinfo is None:
        raise ScoringError("naive datetime given to scoring", hint="Use digestbot.clock.now().")
    return when.timestamp()


def _store_profiles(
    store: Store, model: PaperModel, subscribers: Sequence[Any], now: datetime, config: Config
) -> Profiles:
    new_since = now - timedelta(days=config["scoring.new_subscriber_days"])
    start = np.array(
        [model.first_after(_timestamp(s.last_digest_at or new_since)) for s in subscribers],
        dtype=np.int64,
    )
    row_of = {s.id: i for i, s in enumerate(subscribers)}
    liked: list[list[int]] = [[] for _ in subscribers]
    disliked: list[list[int]] = [[] for _ in subscribers]
    excluded: list[tuple[int, int]] = []
    index = model.index
    first = int(start.min(initial=0))
    earliest = model.first_seen[first] - 1 if first < len(model.first_seen) else 0.0
    with store.session() as session:
        # by id range and then filtered: one query per chunk, no huge IN lists
        in_range = (min(row_of), max(row_of))
        for sub_id, paper_id, value in session.execute(
            select(Feedback.subscriber_id, Feedback.paper_id, Feedback.value).where(
                Feedback.subscriber_id.between(*in_range)
            )
        ):
            r, p = row_of.get(sub_id), index.get(paper_id)
            if r is None or p is None:
                continue
            (liked if value > 0 else disliked)[r].append(p)
            excluded.append((r, p))
        # a candidate was first seen after ``since``, so only digests made since can hold it
        # (a day's slack for clocks that disagree, as replays with --now may)
        since = datetime.fromtimestamp(float(earliest), tz=now.tzinfo) - timedelta(days=1)
        shown = (
            select(Digest.subscriber_id, DigestItem.paper_id)
            .join(DigestItem, DigestItem.digest_id == Digest.id)
            .where(
                Digest.subscriber_id.between(*in_range),
                Digest.created_at >= since,
                Digest.state.in_(SHOWN_STATES),
            )
        )
        for sub_id, paper_id in session.execute(shown):
            r, p = row_of.get(sub_id), index.get(paper_id)
            if r is not None and p is not None:
                excluded.append((r, p))
    return Profiles(
        keywords=[list(s.keywords or []) for s in subscribers],
        liked=[sorted(set(x)) for x in liked],
        disliked=[sorted(set(x)) for x in disliked],
        start=start,
        end=model.first_after(_timestamp(now)),
        ks=np.array([s.max_items for s in subscribers], dtype=np.int64),
        min_scores=np.array([s.min_score or 0.0 for s in subscribers], dtype=np.float32),
        excluded=excluded,
    )


def score_subscribers(
    store: Store, subscribers: Iterable[Any], *, now: datetime, config: Config
) -> Generator[SubscriberPicks, None, None]:
    """Each subscriber's picks among the papers new to them, in chunks of
    ``scoring.chunk_size`` subscribers, one chunk a core at once (memory stays flat however
    many there are).

    A subscriber is anything with ``id``, ``keywords``, ``last_digest_at``, ``max_items``
    and ``min_score``: an ORM Subscriber, or a light row from :func:`iter_subscriber_chunks`.
    """
    model = load_model(store, title_weight=config["scoring.title_weight"])
    attach_embeddings(store, model, config)
    stamp = _timestamp(now)
    # the store is read here, in the caller's thread; chunks are ranked on one thread a core
    chunks = (
        (chunk, _store_profiles(store, model, chunk, now, config))
        for chunk in batched(subscribers, config["scoring.chunk_size"])
    )

    def ranked(item: tuple[list[Any], Profiles]) -> tuple[list[Any], list[list[Pick]]]:
        return item[0], rank(model, item[1], now=stamp, config=config)

    for chunk, picks in in_order(ranked, chunks, os.cpu_count()):
        for subscriber, chosen in zip(chunk, picks, strict=True):
            yield SubscriberPicks(subscriber.id, chosen)


def rank_profile(
    store: Store,
    *,
    keywords: str | Sequence[str] = (),
    liked: Sequence[str] = (),
    disliked: Sequence[str] = (),
    top: int = 10,
    config: Config,
    now: datetime | None = None,
) -> list[Pick]:
    """The store's papers ranked for an ad-hoc profile (``digestbot rank``)."""
    from ..store.subscribers import parse_keywords

    words = parse_keywords(keywords)
    model = load_model(store, title_weight=config["scoring.title_weight"])
    attach_embeddings(store, model, config)
    unknown = [p for p in [*liked, *disliked] if p not in model.index]
    if unknown:
        raise ScoringError(
            f"unknown paper id {unknown[0]!r}",
            field="liked" if unknown[0] in liked else "disliked",
            hint="Use ids printed by `digestbot rank` or found in a digest.",
        )
    if not words and not liked:
        raise ScoringError(
            "give keywords or liked papers to rank by",
            field="keywords",
            hint="e.g. digestbot rank --keywords 'sparse autoencoders, interpretability'",
        )
    liked_rows = [model.index[p] for p in liked]
    disliked_rows = [model.index[p] for p in disliked]
    profiles = Profiles(
        keywords=[words],
        liked=[liked_rows],
        disliked=[disliked_rows],
        start=np.zeros(1, dtype=np.int64),
        end=len(model.ids) if now is None else model.first_after(_timestamp(now)),
        ks=np.array([top], dtype=np.int64),
        min_scores=np.zeros(1, dtype=np.float32),
        excluded=[(0, p) for p in liked_rows + disliked_rows],
    )
    stamp = float(model.first_seen.max(initial=0.0)) if now is None else _timestamp(now)
    return rank(model, profiles, now=stamp, config=config)[0]
