"""scoring.semantic: sentence-embedding similarity fused with the lexical score.

A reader's embedding is the mean of their keyword phrases' embeddings plus the Rocchio mix of
their liked and disliked papers' (as the lexical profile is made). Its cosine with each
candidate paper is z-scored per reader (how many standard deviations above that reader's mean
over the candidates), so that a broad and a narrow profile weigh alike, and
``semantic_weight x z`` is added to the lexical cosine. The z-scores of a chunk's readers x
candidates come from one dense matrix product (BLAS), and are added inside the one sparse
product scoring already does: the profiles gain them as columns, the candidates an identity
block, so that the product is the lexical cosine plus ``w x z`` (a sparse product over the
embedding's 384 dense columns would be several times slower). With scoring.require_match, a
paper no keyword matches may still be picked when its z is at least scoring.semantic_min_z:
it was picked for its meaning rather than its words; a matched paper whose z is under
scoring.semantic_floor_z is dropped.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..config import Config
from ..errors import ConfigError
from ..ingest.embed import Encoder, encoder, load_embeddings
from ..store import Store
from .model import PaperModel

# distinct keyword phrases whose embeddings a process remembers; past this it starts over
PHRASE_MEMO = 100_000

_lock = threading.Lock()
# a model's paper vectors, in its row order; dropped with the model
_vectors: weakref.WeakKeyDictionary[PaperModel, tuple[Encoder, np.ndarray]] = (
    weakref.WeakKeyDictionary()
)
_phrases: dict[tuple[str, str], np.ndarray] = {}


def attach(store: Store, model: PaperModel, config: Config) -> None:
    """Load (embedding what is missing) the vectors of ``model``'s papers, when semantic
    scoring is on; :func:`fusion` finds them by the model."""
    enc = encoder(config)
    if enc is None:
        return
    with _lock:
        found = _vectors.get(model)
        if found is not None and found[0] is enc:
            return
    use_vectors(model, enc, load_embeddings(store, enc, [str(i) for i in model.ids.tolist()]))


def use_vectors(model: PaperModel, enc: Encoder, vectors: np.ndarray) -> None:
    """Score ``model``'s papers with these vectors (rows in the model's order)."""
    with _lock:
        _vectors[model] = (enc, vectors)


def paper_vectors(model: PaperModel) -> tuple[Encoder, np.ndarray]:
    found = _vectors.get(model)
    if found is None:
        raise ConfigError(
            "scoring.semantic is on but the papers' embeddings were not loaded",
            field="scoring.semantic",
            hint="Score through score_subscribers or rank_profile, which load them.",
        )
    return found


def phrase_vectors(enc: Encoder, phrases: Sequence[str]) -> np.ndarray:
    """Embeddings of keyword phrases, each encoded once per process."""
    missing = [p for p in dict.fromkeys(phrases) if (enc.key, p) not in _phrases]
    if missing:
        found = enc.encode(missing)
        with _lock:
            if len(_phrases) + len(missing) > PHRASE_MEMO:
                _phrases.clear()
            _phrases.update({(enc.key, p): v for p, v in zip(missing, found, strict=True)})
    out = np.zeros((len(phrases), enc.dim), dtype=np.float32)
    for i, p in enumerate(phrases):
        out[i] = _phrases[(enc.key, p)]
    return out


def _mean_rows(lists: Sequence[Sequence[int]], n_cols: int) -> sp.csr_matrix:
    lengths = np.array([len(x) for x in lists], dtype=np.int64)
    indptr = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    cols = np.fromiter((c for x in lists for c in x), dtype=np.int64, count=int(indptr[-1]))
    data = (1.0 / np.repeat(np.maximum(lengths, 1), lengths)).astype(np.float32)
    return sp.csr_matrix((data, cols, indptr), shape=(len(lists), n_cols))


def reader_vectors(
    model: PaperModel,
    keywords: Sequence[Sequence[str]],
    liked: Sequence[Sequence[int]],
    disliked: Sequence[Sequence[int]],
    config: Config,
) -> np.ndarray:
    """readers x dim, unit rows (zero for a reader with nothing to go on)."""
    enc, papers = paper_vectors(model)
    ids: dict[str, int] = {}
    rows = [[ids.setdefault(p.casefold(), len(ids)) for p in words] for words in keywords]
    out = np.zeros((len(keywords), enc.dim), dtype=np.float32)
    if ids:
        out += _mean_rows(rows, len(ids)) @ phrase_vectors(enc, list(ids))
    n = papers.shape[0]
    if any(liked):
        out += config["scoring.liked_weight"] * (_mean_rows(liked, n) @ papers)
    if any(disliked):
        out -= config["scoring.disliked_weight"] * (_mean_rows(disliked, n) @ papers)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)


@dataclass
class Fusion:
    """What fusing adds for readers x papers[lo:hi]."""

    readers: np.ndarray  # readers x dim, unit rows
    papers: np.ndarray  # candidates x dim
    mean: np.ndarray  # per reader: mean cosine over the candidates
    scale: np.ndarray  # per reader: 1 / standard deviation (0 where it is 0)
    weight: float
    min_z: float
    floor_z: float
    all_z: np.ndarray = field(init=False)  # readers x candidates

    def __post_init__(self) -> None:
        # readers x candidates, in one BLAS product; readers without a vector get 0
        cos = self.readers @ self.papers.T
        self.all_z = ((cos - self.mean[:, None]) * self.scale[:, None]).astype(np.float32)

    def z(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The z-scores of pairs (reader row, candidate column)."""
        cos = np.einsum("ij,ij->i", self.readers[rows], self.papers[cols])
        return (cos - self.mean[rows]) * self.scale[rows]

    def off_topic(self) -> np.ndarray:
        """readers x candidates, True where the meaning is under floor_z: such a paper is
        never picked, whether a keyword matches it or it is only close (scoring.close_share),
        so that close papers cannot bring back what the floor dropped. A reader without a
        vector has no off-topic papers."""
        return (self.all_z < self.floor_z) & (self.scale != 0)[:, None]

    def allowed(self, matched: sp.csr_matrix) -> sp.csr_matrix:
        """require_match's readers x candidates mask, read with meaning: a matched pair
        stays if its z is at least floor_z (a keyword met in an off-topic paper is dropped),
        and a pair with z at least min_z joins (picked for meaning). A reader without a
        vector (nothing to embed) keeps their matches as they are."""
        if not self.papers.shape[0]:
            return matched
        blind = (self.scale == 0)[:, None]
        keep = ~self.off_topic()
        join = (self.all_z >= self.min_z) & ~blind if self.min_z > 0 else np.zeros_like(keep)
        ok = matched.toarray() != 0
        return sp.csr_matrix(((ok & keep) | join).astype(np.float32))

    def within_floor(self, near: sp.csr_matrix | None) -> sp.csr_matrix | None:
        """``near`` without the pairs under the floor."""
        if near is None or not self.papers.shape[0]:
            return near
        return near.multiply(sp.csr_matrix(~self.off_topic(), dtype=np.float32)).tocsr()


def fusion(
    model: PaperModel,
    keywords: Sequence[Sequence[str]],
    liked: Sequence[Sequence[int]],
    disliked: Sequence[Sequence[int]],
    lo: int,
    hi: int,
    config: Config,
) -> Fusion | None:
    """The semantic part for readers x papers[lo:hi], or None when semantic scoring is off."""
    if not config["scoring.semantic"]:
        return None
    if config["scoring.feedback_weight"]:
        raise ConfigError(
            "scoring.semantic and pseudo-relevance feedback cannot be used together yet",
            field="scoring.feedback_weight",
            hint="Set scoring.feedback_weight = 0 with scoring.semantic on.",
        )
    _, vectors = paper_vectors(model)
    readers = reader_vectors(model, keywords, liked, disliked, config)
    papers = vectors[lo:hi]
    # mean and spread of each reader's cosines over the candidates, from the candidates'
    # mean and covariance: no reader x paper matrix is needed for them
    centre = papers.mean(axis=0) if len(papers) else np.zeros(papers.shape[1], np.float32)
    spread = papers - centre
    cov = (spread.T @ spread) / max(len(papers), 1)
    mean = readers @ centre
    sd = np.sqrt(np.maximum(np.einsum("ij,ij->i", readers @ cov, readers), 0))
    scale = np.divide(1.0, sd, out=np.zeros_like(sd), where=sd > 1e-6)
    return Fusion(
        readers=readers,
        papers=papers,
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
        weight=float(config["scoring.semantic_weight"]),
        min_z=float(config["scoring.semantic_min_z"]),
        floor_z=float(config["scoring.semantic_floor_z"]),
    )


def fused(
    fusion_: Fusion, profile: sp.csr_matrix, papers: sp.csr_matrix
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The profiles and candidate papers with the semantic columns appended: their product
    is the lexical cosine plus ``weight x z``."""
    added = sp.csr_matrix(fusion_.weight * fusion_.all_z)
    block = sp.identity(papers.shape[0], dtype=np.float32, format="csr")
    return (
        sp.hstack([profile, added], format="csr", dtype=np.float32),
        sp.hstack([papers, block], format="csr", dtype=np.float32),
    )
