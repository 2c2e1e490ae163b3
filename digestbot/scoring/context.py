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
# allowed pairs weighed at once (see in_context)
PAIRS_PER_BLOCK = 100_000
# context papers per block of their cosines with the candidates
_SIM_ROWS = 256
# gathered cosines per block while computing them (floats): a block that stays in the
# processor's cache (4M floats took twice the time of 250k)
_BLOCK = 250_000


@dataclass
class Context:
    """The weighed pairs: their places in the weighed matrix's ``data``, the cosine that
    weighed them (the highest with a paper of another keyword; for a pair settled at its
    first try, that try's, at least CONTEXT_SIMILARITY), and (when asked, with every pair
    tried in full) the nearest paper's model row."""

    entries: np.ndarray
    nearest: np.ndarray
    similarity: np.ndarray

    @property
    def weights(self) -> np.ndarray:
        return _weight(self.similarity)


def _weight(similarity: np.ndarray) -> np.ndarray:
    """Full weight from CONTEXT_SIMILARITY up, falling with its square below, never under
    MIN_CONTEXT."""
    return np.maximum(np.minimum(similarity / CONTEXT_SIMILARITY, 1.0) ** 2, MIN_CONTEXT)


@dataclass
class _Supports:
    """For one window of papers, the table of highest cosines with the candidates (across):
    row 0 is -1 throughout (the row of a keyword that matches no context paper); rows 1 to
    ``n`` are the context papers' own cosines (:attr:`sim`), which are the rows of keywords
    that match one context paper, as most do; after them, rows computed for keywords that
    match several, each kept under the phrase's number (:meth:`PaperModel.phrase_numbers`,
    the same in every chunk of readers). So finding the rows of a chunk's few thousand
    keywords is array lookups; a dictionary lookup a keyword took a third of the context's
    time."""

    window: tuple[int, int, int]  # first context paper, first candidate column, hi
    table: np.ndarray
    n: int  # context papers
    used: int = field(init=False)  # rows of the table in use
    rows: np.ndarray = field(init=False)  # per phrase number, its row (-1: not computed)
    generation: int = 0  # tables started since the first

    def __post_init__(self) -> None:
        self.used = 1 + self.n
        self.rows = np.full(0, -1, np.int64)

    @property
    def sim(self) -> np.ndarray:
        """The context papers' cosines (down) with the candidates (across)."""
        return self.table[1 : 1 + self.n]

    def rows_of(
        self, need: np.ndarray, known: sp.csr_matrix, numbers: np.ndarray, breadth: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The table row of each row of ``known`` (phrases x context papers; 0 unless in
        ``need``, whose phrases match some; ``breadth``: how many each matches), by the
        phrases' ``numbers``, with the table and the cosines that hold them (a later call
        may grow or clear the memo; these arrays stay as they are). Only the memo's lookups
        and additions hold the lock: two threads may compute one row at once, and the later
        one's is kept."""
        out = np.zeros(known.shape[0], dtype=np.int64)
        one = breadth[need] == 1
        out[need[one]] = 1 + known.indices[known.indptr[need[one]]]
        several = need[~one]
        wanted = numbers[several]
        with _LOCK:
            found, table, generation = self.look_up(wanted)
        missing = np.flatnonzero(found < 0)
        if len(missing):
            # two phrases of a chunk may be one (two spellings read as the same phrase)
            distinct, lead, which = np.unique(
                wanted[missing], return_index=True, return_inverse=True
            )
            computed = _highest(self.sim, known, several[missing[lead]])
            with _LOCK:
                new = self.keep(distinct, computed, generation)
                table = self.table
            if new is None:
                return self.rows_of(need, known, numbers, breadth)
            found[missing] = new[which.ravel()]
        out[several] = found
        return out, table, self.sim

    def look_up(self, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """The rows kept under these phrase numbers (-1 where none is), with the table that
        holds them and its generation. Under the lock (see :meth:`rows_of`)."""
        if wanted.max(initial=-1) >= len(self.rows):
            grown = np.full(max(2 * len(self.rows), int(wanted.max()) + 1), -1, np.int64)
            grown[: len(self.rows)] = self.rows
            self.rows = grown
        return self.rows[wanted], self.table, self.generation

    def keep(self, numbers: np.ndarray, computed: np.ndarray, generation: int) -> np.ndarray | None:
        """Adds rows computed for these phrase numbers, and returns where they are: in the
        table :meth:`look_up` gave, or None if that table was since cleared (or now is: past
        SUPPORT_MEMO_BYTES a new table starts, as another thread may still read the old
        one). Rows once written are never written again in the same table (growing copies
        them), so threads read them without the lock. Under the lock."""
        at, width = self.used, self.table.shape[1]
        if at > 1 + self.n and (at + len(numbers)) * width * 4 > SUPPORT_MEMO_BYTES:
            self.table = self._grown(1 + self.n, len(numbers))
            self.__post_init__()
            self.generation += 1
        if generation != self.generation:
            return None
        self.used += len(numbers)
        if self.used > len(self.table):
            self.table = self._grown(at, max(len(self.table), len(numbers)))
        self.table[at : self.used] = computed
        new = np.arange(at, self.used)
        self.rows[numbers] = new
        return new

    def _grown(self, keep: int, room: int) -> np.ndarray:
        """A new table with the first ``keep`` rows of this one and room for more."""
        out = np.empty((keep + max(room, len(self.table) - keep), self.table.shape[1]), np.float32)
        out[:keep] = self.table[:keep]
        return out


def _highest(sim: np.ndarray, known: sp.csr_matrix, phrases: np.ndarray) -> np.ndarray:
    """phrases x candidates: each candidate's highest cosine with a context paper the phrase
    matches (each phrase matches several)."""
    out = np.empty((len(phrases), sim.shape[1]), dtype=np.float32)
    counts = np.diff(known.indptr)[phrases]
    ends = np.cumsum(counts)
    per_block = max(_BLOCK // max(sim.shape[1], 1), 1)
    i = 0
    while i < len(phrases):
        # whole phrases, as many as fit in a block of gathered rows (at least one)
        j = max(int(np.searchsorted(ends, ends[i] - counts[i] + per_block, "right")), i + 1)
        n = counts[i:j]
        at = known.indptr[phrases[i:j]]
        papers = known.indices[np.repeat(at - _groups(n), n) + np.arange(int(n.sum()))]
        out[i:j] = np.maximum.reduceat(sim[papers], _groups(n), axis=0)
        i = j
    return out


_MEMO: weakref.WeakKeyDictionary[PaperModel, _Supports] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _supports(model: PaperModel, first: int, base: int, hi: int) -> _Supports:
    window = (first, base, hi)
    found = _MEMO.get(model)
    if found is None or found.window != window:
        # in blocks of rows: the product of 3,000 papers with 3,000 is nearly dense, and
        # whole it held 120 MB more at the peak of a run
        across = model.matrix[base:hi].T.tocsr()
        n = hi - first
        # room for as many computed rows as context papers, before it grows
        table = np.empty((1 + 2 * n, hi - base), dtype=np.float32)
        table[0] = -1.0
        for at in range(0, n, _SIM_ROWS):
            end = min(at + _SIM_ROWS, n)
            table[1 + at : 1 + end] = (model.matrix[first + at : first + end] @ across).toarray()
        found = _MEMO[model] = _Supports(window, table, n)
    return found


def _rows(
    model: PaperModel,
    first: int,
    base: int,
    hi: int,
    need: np.ndarray,
    known: sp.csr_matrix,
    numbers: np.ndarray,
    breadth: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:meth:`_Supports.rows_of` for this window's memo."""
    with _LOCK:
        held = _supports(model, first, base, hi)
    return held.rows_of(need, known, numbers, breadth)


def _groups(sizes: np.ndarray) -> np.ndarray:
    """Start of each group of consecutive items, for groups of these (non-zero) sizes."""
    return np.cumsum(sizes) - sizes


def keyword_codes(typed: sp.csr_matrix, hits: sp.csr_matrix) -> sp.csr_matrix:
    """readers x papers, non-zero where a keyword of the reader matches the paper: the sum,
    over the reader's keywords that match it, of 1 + 64 x (the keyword's column + 1). So the
    value mod 64 is how many match, and when one does, value // 64 - 1 is which: one product
    for require_match's mask and for the context (exact in int64; scoring caps a reader's
    keywords at 50)."""
    phrases_of = typed.tocsr()
    code = sp.csr_matrix(
        (64 * (phrases_of.indices.astype(np.int64) + 1) + 1, phrases_of.indices, phrases_of.indptr),
        shape=phrases_of.shape,
    )
    return (code @ hits.astype(np.int64)).tocsr()


def in_context(
    model: PaperModel,
    phrases: list[str],
    numbers: np.ndarray,
    typed: sp.csr_matrix,
    hits: sp.csr_matrix,
    codes: sp.csr_matrix,
    allowed: sp.csr_matrix,
    lo: int,
    hi: int,
    *,
    nearest: bool = False,
) -> tuple[sp.csr_matrix, Context]:
    """``allowed`` (readers x papers[lo:hi], 1 where allowed; no stored zeros) with each
    pair's weight as its value: 1, or less for a pair one of several keywords matches that
    is unlike the others' papers. ``numbers``: each phrase's
    :meth:`PaperModel.phrase_numbers`; ``hits``: phrases x papers[lo:hi]; ``typed``: readers
    x phrases; ``codes``: their :func:`keyword_codes`.

    A weighed pair is first tried against its reader's broadest other keyword (the one that
    matches the most context papers): most pairs reach CONTEXT_SIMILARITY there, and their
    similarity is then that keyword's, not always the highest. The others are tried against
    every other keyword. With ``nearest`` (for `rank --explain`) every pair is, and the
    Context also names its nearest paper of another keyword.

    The chunk's readers are weighed in blocks of about PAIRS_PER_BLOCK allowed pairs, so the
    arrays of one block are what the weighing holds at once."""
    allowed = allowed.tocsr()
    # which context papers (the CONTEXT_PAPERS newest before hi) each phrase matches
    first = max(hi - CONTEXT_PAPERS, 0)
    if first == lo:
        known = hits.tocsr()
    elif first > lo:
        known = hits.tocsr()[:, first - lo :].tocsr()
    else:
        known = phrase_match_matrix(model, phrases, first, hi)
    if nearest or allowed.nnz <= PAIRS_PER_BLOCK:
        return _weigh(model, numbers, typed, known, codes, allowed, lo, hi, nearest=nearest)
    typed, codes = typed.tocsr(), codes.tocsr()
    cuts = np.searchsorted(allowed.indptr, np.arange(PAIRS_PER_BLOCK, allowed.nnz, PAIRS_PER_BLOCK))
    edges = np.unique(np.concatenate([[0], cuts, [allowed.shape[0]]])).tolist()
    done = [
        _weigh(model, numbers, typed[a:b], known, codes[a:b], allowed[a:b], lo, hi)
        for a, b in zip(edges[:-1], edges[1:], strict=True)
    ]
    out = sp.vstack([part for part, _ in done], format="csr")
    at = out.indptr[edges[:-1]]
    return out, Context(
        np.concatenate([c.entries + x for (_, c), x in zip(done, at, strict=True)]),
        np.zeros(0, np.int64),
        np.concatenate([c.similarity for _, c in done]),
    )


def _weigh(
    model: PaperModel,
    numbers: np.ndarray,
    typed: sp.csr_matrix,
    known: sp.csr_matrix,
    codes: sp.csr_matrix,
    allowed: sp.csr_matrix,
    lo: int,
    hi: int,
    *,
    nearest: bool = False,
) -> tuple[sp.csr_matrix, Context]:
    """One block of :func:`in_context`'s readers; ``known``: phrases x the context papers
    (the newest before ``hi``), where each phrase matches."""
    allowed = allowed.tocsr()
    # allowed's pairs, weight 1 unless weighed below
    out = sp.csr_matrix(
        (np.ones(allowed.nnz, np.float32), allowed.indices, allowed.indptr), shape=allowed.shape
    )
    empty = np.zeros(0, np.int64)
    none = Context(empty, empty, np.zeros(0, np.float32))
    phrases_of = typed.tocsr()
    n_phrases = np.diff(phrases_of.indptr)
    rows = np.repeat(np.arange(out.shape[0]), np.diff(out.indptr))
    if np.array_equal(codes.indptr, out.indptr) and np.array_equal(codes.indices, out.indices):
        coded = codes.data  # allowed is what the keywords match: no lookup needed
    else:
        coded = pair_values(codes, rows, out.indices)
    entries = np.flatnonzero(((coded & 63) == 1) & (n_phrases[rows] >= 2))
    if not len(entries):
        return out, none
    own = (coded[entries] >> 6) - 1
    first = hi - known.shape[1]
    breadth = np.diff(known.indptr)
    t_rows = rows[entries]
    # a pair's first try: its reader's broadest keyword, or the next broadest where that is
    # its own (readers of weighed pairs have two or more)
    broadest, next_broadest = _two_broadest(phrases_of, breadth)
    anchor = broadest[t_rows]
    anchor = np.where(anchor == own, next_broadest[t_rows], anchor)
    # columns from the context's first paper (or an older candidate's): the same for every
    # chunk whose candidates are all among the context papers, as most are
    base = min(lo, first)
    width = hi - base
    column = out.indices[entries] + (lo - base)
    if nearest:
        best = np.full(len(entries), -1.0, dtype=np.float32)
    else:
        row_of, table, _ = _rows(
            model, first, base, hi, _used(anchor, breadth), known, numbers, breadth
        )
        best = np.take(table, row_of[anchor] * width + column)
    rest = np.flatnonzero(best < CONTEXT_SIMILARITY)
    # the rest against each other keyword of their reader's: the keyword's table row (row 0,
    # all -1, for a keyword that matches no context paper) at the pair's paper
    per = n_phrases[t_rows[rest]]
    pair_of = np.repeat(np.arange(len(rest)), per)
    head = phrases_of.indptr[t_rows[rest]]
    phrase = phrases_of.indices[np.repeat(head - _groups(per), per) + np.arange(len(pair_of))]
    row_of, table, sim = _rows(
        model, first, base, hi, _used(phrase, breadth), known, numbers, breadth
    )
    found = np.take(table, row_of[phrase] * width + column[rest][pair_of])
    found[phrase == own[rest][pair_of]] = -1.0
    if len(rest):
        best[rest] = np.maximum.reduceat(found, _groups(per))
    # only pairs of the rest can weigh less than 1
    low = rest[(best[rest] >= 0) & (best[rest] < CONTEXT_SIMILARITY)]
    out.data[entries[low]] = _weight(best[low])
    keep = best >= 0
    near = empty
    if nearest:
        near = _nearest(sim, known, phrase, column[rest][pair_of], found, best, pair_of)[keep]
        near = near + first
    return out, Context(entries[keep], near, best[keep])


def _two_broadest(phrases_of: sp.csr_matrix, breadth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per reader, the keyword that matches the most context papers and the next one (ties
    to the later column; -1 or any keyword where a reader has too few)."""
    n = len(breadth) + 1
    key = breadth[phrases_of.indices].astype(np.int64) * n + phrases_of.indices
    # each segment from one reader's first keyword runs to the next reader's that has any
    counts = np.diff(phrases_of.indptr)
    readers = np.flatnonzero(counts)
    starts = phrases_of.indptr[readers]
    owner = np.repeat(np.arange(len(counts)), counts)
    best = np.full(len(counts), -1, dtype=np.int64)
    second = best.copy()
    if len(readers):
        best[readers] = np.maximum.reduceat(key, starts) % n
        key[phrases_of.indices == best[owner]] = -1
        second[readers] = np.maximum.reduceat(key, starts) % n
    return best, second


def _used(phrase: np.ndarray, breadth: np.ndarray) -> np.ndarray:
    """The distinct phrases among ``phrase`` that match a context paper."""
    used = np.zeros(len(breadth), dtype=bool)
    used[phrase] = True
    return np.flatnonzero(used & (breadth > 0))


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
