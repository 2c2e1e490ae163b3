"""Every part of one paper's score for one reader profile (`digestbot rank --explain`).

The profile is put together exactly as :func:`digestbot.scoring.engine.rank` does it, from the
same parts; here each part is kept apart and scaled by the normalisations that follow it, so
the parts' dot products with the paper add up to the score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..config import Config
from ..errors import ScoringError
from ..store import Store
from .context import in_context, keyword_codes
from .engine import (
    LIKED_MIN_SIMILARITY,
    ProfileParts,
    Profiles,
    PseudoFeedback,
    _allowed,
    _binary,
    _boosts,
    feedback_vectors,
    profile_parts,
    rank_profile,
)
from .model import PaperModel, keyword_matrix, load_model, near_words, phrase_match_matrix
from .semantic import fusion

TERMS_SHOWN = 6


@dataclass
class Part:
    name: str  # keywords, liked, disliked, feedback, semantic
    contribution: float  # its share of the score (they add up to the similarity)
    # (term, weight in the reader's profile, weight in the paper, product), largest first
    terms: list[tuple[str, float, float, float]] = field(default_factory=list)


@dataclass
class Explanation:
    paper_id: str
    title: str
    similarity: float  # cosine of the profile and the paper: the sum of the parts
    boost: float  # popularity and recency, added to a positive similarity
    score: float
    parts: list[Part]
    matched: list[str]  # the reader's keywords the paper matches
    respelled: list[tuple[str, str]]
    liked_similarity: float | None  # to the nearest liked paper, if any
    best_match: float  # the best score of a paper allowed by a match
    close_share: float
    why_allowed: str  # how the paper may be picked, or why it may not
    rank: int | None  # its place among the picks (1-based), None if not picked
    # scoring.semantic: the z-score of the paper's embedding similarity for this reader
    semantic_z: float | None = None
    # scoring.context: the weight of the similarity (1, or less for a paper one of several
    # keywords matches, unlike the papers the others match), and the paper of another
    # keyword it is most like, with their cosine
    context: float = 1.0
    context_paper: str | None = None
    context_similarity: float | None = None

    def as_dict(self) -> dict[str, object]:
        out = dict(self.__dict__)
        out["parts"] = [p.__dict__ for p in self.parts]
        return out


def explain(
    store: Store,
    paper_id: str,
    *,
    keywords: str | Sequence[str] = (),
    liked: Sequence[str] = (),
    disliked: Sequence[str] = (),
    config: Config,
) -> Explanation:
    """The parts of ``paper_id``'s score for an ad-hoc profile, as ``digestbot rank`` ranks."""
    from ..store.subscribers import parse_keywords

    model = load_model(store, title_weight=config["scoring.title_weight"])
    if paper_id not in model.index:
        raise ScoringError(
            f"unknown paper id {paper_id!r}",
            field="explain",
            hint="Use an id printed by `digestbot rank` or found in a digest.",
        )
    picks = rank_profile(
        store,
        keywords=keywords,
        liked=liked,
        disliked=disliked,
        top=len(model.ids),
        config=config,
    )
    words = parse_keywords(keywords)
    n = len(model.ids)
    liked_rows = [model.index[p] for p in liked]
    profiles = Profiles(
        keywords=[words],
        liked=[liked_rows],
        disliked=[[model.index[p] for p in disliked]],
        start=np.zeros(1, dtype=np.int64),
        end=n,
        ks=np.ones(1, dtype=np.int64),
        min_scores=np.zeros(1, dtype=np.float32),
        excluded=[],
    )
    parts = profile_parts(model, profiles, config)
    raw = parts.raw()
    s0 = _inverse_norm(raw)
    hits = phrase_match_matrix(model, parts.phrases) if parts.phrases else None
    codes = keyword_codes(parts.typed, hits) if hits is not None else None
    allowed = _allowed(model, profiles.liked, codes, 0, n)
    pieces: list[tuple[str, sp.csr_matrix]] = [("keywords", parts.keywords * s0)]
    if parts.liked is not None:
        pieces.append(("liked", parts.liked * s0))
    if parts.disliked is not None:
        pieces.append(("disliked", -parts.disliked * s0))
    weight = config["scoring.feedback_weight"]
    if weight:
        spec = PseudoFeedback(
            model=model,
            lo=0,
            matched=_binary(allowed),
            typed=parts.typed,
            hits=hits,
            keyword_terms=(
                parts.typed @ keyword_matrix(model, parts.phrases) if parts.phrases else None
            ),
            papers=config["scoring.feedback_papers"],
            terms=config["scoring.feedback_terms"],
            weight=weight,
        )
        first = (raw * s0 @ model.matrix.T).tocsr()
        pieces.append(("feedback", weight * feedback_vectors(spec, first, 0, 1)))
    total = pieces[0][1]
    for _, piece in pieces[1:]:
        total = total + piece
    s1 = _inverse_norm(total)
    row = model.index[paper_id]
    paper = model.matrix[row]
    names = {col: term for term, col in model.vocabulary.items()}
    out_parts = [_part(name, piece * s1, paper, names) for name, piece in pieces]
    profile = (total * s1).tocsr()
    similarity = float((profile @ paper.T).toarray()[0, 0])
    meaning = fusion(model, [words], [liked_rows], profiles.disliked, 0, n, config)
    z = None
    if meaning is not None:
        z = float(meaning.z(np.zeros(1, np.int64), np.array([row]))[0])
        out_parts.append(Part("semantic", round(meaning.weight * z, 6)))
        similarity += meaning.weight * z
    everything = (profile @ model.matrix.T).toarray().ravel()
    if meaning is not None:
        everything += meaning.weight * meaning.z(np.zeros(n, np.int64), np.arange(n))
        allowed = meaning.allowed(allowed)
    mask = allowed.toarray().ravel() != 0
    # each allowed paper's weight: 1, or less under scoring.context; the best match is
    # weighed too, as the engine weighs it before the close-papers floor
    weights = mask.astype(np.float64)
    weight, context_paper, context_similarity = 1.0, None, None
    if config["scoring.context"] and hits is not None and codes is not None and mask.any():
        weighed, found = in_context(
            model,
            parts.phrases,
            model.phrase_numbers(parts.phrases),
            parts.typed,
            hits,
            codes,
            allowed,
            0,
            n,
            nearest=True,
        )
        weights = weighed.toarray().ravel()
        at = np.flatnonzero(weighed.indices[found.entries] == row)
        if len(at):
            weight = float(found.weights[at[0]])
            context_paper = model.titles[int(found.nearest[at[0]])]
            context_similarity = round(float(found.similarity[at[0]]), 6)
    best = float((everything * weights)[mask].max(initial=0.0))
    matched = []
    if hits is not None:
        found_hits = hits[:, row].toarray().ravel() != 0
        column = {p: i for i, p in enumerate(parts.phrases)}
        matched = [w for w in words if found_hits[column[model.correct(w.casefold())[0]]]]
    respelled = [pair for w in matched for pair in model.correct(w.casefold())[1]]
    near = None
    if liked_rows:
        near = float((model.matrix[liked_rows] @ paper.T).toarray().max())
    share = config["scoring.close_share"]
    require = config["scoring.require_match"]
    if paper_id in liked or paper_id in disliked:
        why = "not shown: the reader liked or disliked it"
    elif not require:
        why = "any paper may be picked (scoring.require_match is off)"
    elif meaning is not None and z is not None and matched and z < meaning.floor_z:
        why = (
            f"not shown: matches {', '.join(matched)} but its meaning is far from the "
            f"reader's (z {z:.2f} < scoring.semantic_floor_z {meaning.floor_z:g})"
        )
    elif matched:
        why = "matches the keywords " + ", ".join(matched)
    elif meaning is not None and z is not None and meaning.min_z > 0 and z >= meaning.min_z:
        why = f"picked for meaning: z {z:.2f} >= scoring.semantic_min_z {meaning.min_z:g}"
    elif near is not None and near >= LIKED_MIN_SIMILARITY:
        why = f"{near:.3f} similar to a liked paper (at least {LIKED_MIN_SIMILARITY})"
    elif share and best > 0 and similarity >= share * best and _near_words_in(model, parts, row):
        why = f"close: at least {share:g} x the best match's {best:.4f}"
    elif not share:
        why = "not shown: matches no keyword (scoring.close_share is 0)"
    else:
        why = (
            f"not shown: matches no keyword, and scores under {share:g} x the best match's "
            f"{best:.4f}"
        )
    place = next((i for i, p in enumerate(picks, 1) if p.paper_id == paper_id), None)
    boosts = _boosts(model, row, row + 1, float(model.first_seen.max(initial=0.0)), config)
    boost = float(boosts[0]) if boosts is not None and similarity > 0 else 0.0
    return Explanation(
        paper_id=paper_id,
        title=model.titles[row],
        similarity=round(similarity, 6),
        boost=round(boost, 6),
        score=round(similarity * weight + boost, 6),
        parts=out_parts,
        matched=matched,
        respelled=respelled,
        liked_similarity=None if near is None else round(near, 6),
        best_match=round(best, 6),
        close_share=share,
        why_allowed=why,
        rank=place,
        semantic_z=None if z is None else round(z, 6),
        context=round(weight, 6),
        context_paper=context_paper,
        context_similarity=context_similarity,
    )


def _near_words_in(model: PaperModel, parts: ProfileParts, row: int) -> bool:
    """Whether the paper has a rarer word of the reader's keywords (see engine._near)."""
    if not parts.phrases:
        return False
    once = parts.typed.copy()
    once.data[:] = 1.0
    words = (once @ near_words(model, parts.phrases)).tocsr()
    binary = model.binary
    assert binary is not None  # set when the model is made
    return bool((words @ binary[row].T).toarray()[0, 0] > 0)


def _inverse_norm(matrix: sp.csr_matrix) -> float:
    norm = float(np.sqrt(matrix.multiply(matrix).sum()))
    return 1.0 / norm if norm > 0 else 0.0


def _part(name: str, piece: sp.csr_matrix, paper: sp.csr_matrix, names: dict[int, str]) -> Part:
    both = piece.tocsr().multiply(paper).tocsr()
    order = np.argsort(-np.abs(both.data), kind="stable")[:TERMS_SHOWN]
    lookup = piece.tocsr()
    terms = []
    for i in order.tolist():
        col = int(both.indices[i])
        terms.append(
            (
                names.get(col, str(col)),
                round(float(lookup[0, col]), 6),
                round(float(paper[0, col]), 6),
                round(float(both.data[i]), 6),
            )
        )
    return Part(name, round(float(both.sum()), 6), terms)
