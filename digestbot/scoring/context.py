"""A reader's interests seen together: a paper that one of several keywords matches counts for
less when it is unlike every paper the reader's other keywords match (scoring.context).

A single word means different things in different fields: for a reader of "vision transformer,
segmentation, object detection, 3D", "segmentation" also matches papers on segmenting legal
text. Those papers resemble none of the papers the other three keywords match, while image
segmentation papers do. So each allowed pair (reader, paper) that exactly one of the reader's
keywords matches, when other keywords of theirs match recent papers too, is weighed by the
paper's highest cosine with one of those papers: full weight from CONTEXT_SIMILARITY up,
falling with its square below it, never under MIN_CONTEXT. A paper two keywords match, a
reader of one keyword (or whose other keywords match nothing), and a pair allowed only by a
liked paper or by its meaning keep full weight.

The other keywords' papers are the CONTEXT_PAPERS newest before the run's ``now``: the same
for every reader and every chunk of readers, so a reader's picks do not depend on whom they
are scored with. Each keyword's highest cosine with each candidate is computed once per run
and kept (4 bytes a candidate, up to SUPPORT_MEMO_BYTES in all), so the work per reader is a
few array lookups.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .model import PaperModel, pair_values, phrase_match_matrix

# about the cosine of two papers on one topic in the seeds (image segmentation papers reach
# 0.056 to 0.070 with vision papers; legal-text segmentation 0.035)
CONTEXT_SIMILARITY = 0.06
# a weight, never zero: such pairs keep their order among themselves
MIN_CONTEXT = 0.01
# papers the other keywords' matches are taken from: a day's listing or more
CONTEXT_PAPERS = 3000
# kept keyword x candidate cosines; past this they are computed again as chunks ask
SUPPORT_MEMO_BYTES = 256 * 2**20
# gathered cosines per block while computing them (floats)
_BLOCK = 4_000_000


@dataclass
class Context:
    """The weighed pairs: their places in the weighed matrix's ``data``, their weights, their
    highest cosine with a paper of another keyword, and (when asked) that paper's model row."""

    entries: np.ndarray
    weights: np.ndarray
    nearest: np.ndarray
    similarity: np.ndarray


@dataclass
class _Supports:
    """For one window of papers: the cosines of the context papers (down) with the
    candidates (across), and per keyword each candidate's highest cosine with a context
    paper the keyword matches."""

    window: tuple[int, int, int]  # first context paper, first candidate column, hi
    sim: np.ndarray
    rows: dict[str, int] = field(default_factory=dict)
    table: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    used: int = 0  # rows of the table in use

    def rows_of(self, phrases: list[str], need: np.ndarray, known: sp.csr_matrix) -> np.ndarray:
        """The table row of each needed phrase (index into ``phrases``), computing the rows
        it lacks from ``known`` (phrases x context papers)."""
        width = self.sim.shape[1]
        wanted = need.tolist()
        names = list(map(phrases.__getitem__, wanted))
        known_rows = list(map(self.rows.get, names))
        missing = [i for i, g in zip(wanted, known_rows, strict=True) if g is None]
        if (self.used + len(missing)) * width * 4 > SUPPORT_MEMO_BYTES:
            self.rows.clear()
            self.used = 0
            missing = wanted
        if missing:
            at, self.used = self.used, self.used + len(missing)
            if self.used > len(self.table):
                grown = np.zeros((max(2 * len(self.table), self.used), width), np.float32)
                grown[:at] = self.table[:at]
                self.table = grown
            self.table[at : self.used] = _highest(self.sim, known, np.array(missing))
            self.rows.update(
                zip(map(phrases.__getitem__, missing), range(at, self.used), strict=True)
            )
        out = np.zeros(len(phrases), dtype=np.int64)
        out[need] = list(map(self.rows.__getitem__, names))
        return out


def _highest(sim: np.ndarray, known: sp.csr_matrix, phrases: np.ndarray) -> np.ndarray:
    """phrases x candidates: each candidate's highest cosine with a context paper the phrase
    matches (each phrase matches at least one)."""
    out = np.zeros((len(phrases), sim.shape[1]), dtype=np.float32)
    counts = np.diff(known.indptr)[phrases]
    ends = np.cumsum(counts)
    per_block = max(_BLOCK // max(sim.shape[1], 1), 1)
    i = 0
    while i < len(phrases):
        # whole phrases, as many as fit in a block of gathered rows (at least one)
        j = max(int(np.searchsorted(ends, ends[i] - counts[i] + per_block, "right")), i + 1)
        n = counts[i:j]
        papers = known.indices[
            np.repeat(known.indptr[phrases[i:j]] - _groups(n), n) + np.arange(int(n.sum()))
        ]
        out[i:j] = np.maximum.reduceat(sim[papers], _groups(n), axis=0)
        i = j
    return out


_MEMO: weakref.WeakKeyDictionary[PaperModel, _Supports] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _supports(model: PaperModel, first: int, base: int, hi: int) -> _Supports:
    window = (first, base, hi)
    found = _MEMO.get(model)
    if found is None or found.window != window:
        sim = (model.matrix[first:hi] @ model.matrix[base:hi].T).toarray().astype(np.float32)
        found = _MEMO[model] = _Supports(window, sim, table=np.zeros((0, hi - base), np.float32))
    return found


def _groups(sizes: np.ndarray) -> np.ndarray:
    """Start of each group of consecutive items, for groups of these (non-zero) sizes."""
    return np.cumsum(sizes) - sizes


def in_context(
    model: PaperModel,
    phrases: list[str],
    typed: sp.csr_matrix,
    hits: sp.csr_matrix,
    allowed: sp.csr_matrix,
    lo: int,
    hi: int,
    *,
    nearest: bool = False,
) -> tuple[sp.csr_matrix, Context]:
    """``allowed`` (readers x papers[lo:hi]) with each pair's weight as its value: 1, or less
    for a pair one of several keywords matches that is unlike the others' papers. ``hits``:
    phrases x papers[lo:hi]; ``typed``: readers x phrases. With ``nearest``, the Context also
    names each weighed pair's nearest paper of another keyword (for `rank --explain`)."""
    out = allowed.tocsr().copy()
    out.data = (out.data != 0).astype(np.float32)
    out.eliminate_zeros()
    out.sort_indices()
    empty = np.zeros(0, np.int64)
    none = Context(empty, np.zeros(0, np.float32), empty, np.zeros(0, np.float32))
    # one product tells, for each pair, how many of the reader's keywords match the paper and
    # which one when it is one: each keyword counts 1 + 64 x (its number + 1); exact in
    # float64 for any number of keywords a reader may have (scoring caps them at 50)
    phrases_of = typed.tocsr()
    n_phrases = np.diff(phrases_of.indptr)
    code = phrases_of.astype(np.float64)
    code.data = 1.0 + 64.0 * (code.indices + 1.0)
    rows = np.repeat(np.arange(out.shape[0]), np.diff(out.indptr))
    product = (code @ hits.astype(np.float64)).tocsr()
    product.sort_indices()
    if np.array_equal(product.indptr, out.indptr) and np.array_equal(product.indices, out.indices):
        coded = product.data  # allowed is what the keywords match: no lookup needed
    else:
        coded = pair_values(product, rows, out.indices)
    entries = np.flatnonzero((np.mod(coded, 64.0) == 1) & (n_phrases[rows] >= 2))
    if not len(entries):
        return out, none
    own = (coded[entries] // 64).astype(np.int64) - 1
    first = max(hi - CONTEXT_PAPERS, 0)
    if first >= lo:
        known = hits.tocsr()[:, first - lo :].tocsr()
    else:
        known = phrase_match_matrix(model, phrases, first, hi)
    # each weighed pair against each other keyword of its reader's that matches a context
    # paper
    t_rows = rows[entries]
    per = n_phrases[t_rows]
    pair_of = np.repeat(np.arange(len(entries)), per)
    phrase = phrases_of.indices[
        np.repeat(phrases_of.indptr[t_rows] - _groups(per), per) + np.arange(len(pair_of))
    ]
    other = (phrase != own[pair_of]) & (np.diff(known.indptr)[phrase] > 0)
    if not other.any():
        return out, none
    need = np.bincount(phrase[other], minlength=len(phrases)) > 0
    with _LOCK:
        # columns from the context's first paper (or an older candidate's): the same for
        # every chunk whose candidates are all among the context papers, as most are
        base = min(lo, first)
        held = _supports(model, first, base, hi)
        row_of = held.rows_of(phrases, np.flatnonzero(need), known)
        table, width = held.table, hi - base
        column = out.indices[entries][pair_of] + (lo - base)
        found = np.full(len(phrase), -1.0, dtype=np.float32)
        found[other] = np.take(table, row_of[phrase[other]] * width + column[other])
    best = np.maximum.reduceat(found, _groups(per))
    keep = best >= 0
    weights = np.maximum(np.minimum(best[keep] / CONTEXT_SIMILARITY, 1.0) ** 2, MIN_CONTEXT)
    out.data[entries[keep]] = weights
    near = empty
    if nearest:
        near = _nearest(held.sim, known, phrase, column, found, best, pair_of)[keep] + first
    return out, Context(entries[keep], out.data[entries[keep]], near, best[keep])


def _nearest(
    sim: np.ndarray,
    known: sp.csr_matrix,
    phrase: np.ndarray,
    column: np.ndarray,
    found: np.ndarray,
    best: np.ndarray,
    pair_of: np.ndarray,
) -> np.ndarray:
    """Per weighed pair, the context paper (row) of its highest cosine: one lookup per pair,
    for explaining a few."""
    near = np.full(len(best), -1, dtype=np.int64)
    for at in np.flatnonzero((found == best[pair_of]) & (found >= 0)).tolist():
        pair = int(pair_of[at])
        if near[pair] < 0:
            papers = known.indices[known.indptr[phrase[at]] : known.indptr[phrase[at] + 1]]
            near[pair] = papers[int(np.argmax(sim[papers, column[at]]))]
    return near
