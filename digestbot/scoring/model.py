"""The paper model: TF-IDF vectors of every paper in the store, title counted above abstract.

The model is rebuilt deterministically from the store (papers in id order), so two runs over
the same papers score alike; it is cached per process while the papers do not change.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import scipy.sparse as sp
from rapidfuzz import fuzz, process
from sklearn.feature_extraction.text import TfidfTransformer
from sqlalchemy import func, select

from ..store import Paper, Store
from .text import (
    _TOKEN,
    STOP_WORDS,
    acronym_definitions,
    fold,
    joined_form,
    phrase_needs,
    phrase_segments,
    phrase_terms,
    phrase_words,
    terms,
    tokens,
    topical,
)
from .topk import topk_rows

# a multi-word keyword counts as its phrase; each of its words adds at most this share of the
# phrase's weight, less the commoner the word (see keyword_matrix)
COMPONENT_SHARE = 0.7
RARITY_POWER = 0.5
# a keyword word no paper uses is read as the closest word the papers use, if it is at least
# this similar (rapidfuzz ratio, 0-100: "learnig" -> "learning" is 93) and this long
FUZZY_MIN_RATIO = 85
FUZZY_MIN_LENGTH = 5
# a paper no keyword matches may be picked as close only if it has a word of the reader's
# keywords that is in at most this share of the papers
NEAR_MAX_DF = 0.3
# feedback terms are words in at most this share of the papers, among the strongest this
# many terms of a paper
FEEDBACK_MAX_DF = 0.1
FEEDBACK_SIGNATURE = 100000
# a term joins a reader's profile by feedback when this many of their best matches use it
FEEDBACK_SHARED = 3
# at most this many ways to match a phrase of several topics (one per combination of the
# topics' spellings)
MAX_CLAUSES = 16
# entries (two per distinct phrase, a few hundred bytes each) a model remembers; past this
# the memo starts over
PHRASE_MEMO = 200_000


def l2_rows(matrix: sp.spmatrix) -> sp.csr_matrix:
    """Rows scaled to unit length (all-zero rows stay zero); empty matrices are fine."""
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    matrix.data *= np.repeat(scale, np.diff(matrix.indptr)).astype(np.float32)
    return matrix


def pair_values(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """matrix[rows[i], cols[i]] for many pairs at once (in its dtype), by binary search on
    flat keys."""
    matrix = matrix.tocsr()
    matrix.sort_indices()
    width = matrix.shape[1]
    keys = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    keys = keys * width + matrix.indices
    want = rows.astype(np.int64) * width + cols
    at = np.searchsorted(keys, want)
    at_ok = np.minimum(at, max(len(keys) - 1, 0))
    found = (at < len(keys)) & (keys[at_ok] == want) if len(keys) else np.zeros(len(want), bool)
    out = np.zeros(len(want), dtype=matrix.dtype)
    out[found] = matrix.data[at_ok[found]]
    return out


@dataclass(eq=False)
class PaperModel:
    """Vectors of all papers, sorted by when they were first seen (oldest first)."""

    ids: np.ndarray  # object array of paper ids
    titles: list[str]
    first_seen: np.ndarray  # float64 POSIX seconds, ascending
    upvotes: np.ndarray  # float64, 0 when unknown
    matrix: sp.csr_matrix  # papers x terms, rows L2-normalised
    vocabulary: dict[str, int]
    idf: np.ndarray
    fingerprint: str = ""
    index: dict[str, int] = field(default_factory=dict)
    binary: sp.csr_matrix = field(init=False, repr=False)  # which terms each paper has
    df: np.ndarray = field(init=False, repr=False)  # papers having each term
    topical: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    # acronyms the papers define: phrase key ("text speech") -> acronym terms ("tts",), and back
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    expansions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # the words papers use (lower case, as written), for reading a misspelt keyword word
    surface: list[str] = field(default_factory=list)
    # match clauses and keyword_matrix rows per phrase: readers share phrases, and every
    # chunk of readers asks again (the model is fixed once built; see PHRASE_MEMO)
    _memo: dict[tuple[str, str], object] = field(default_factory=dict, repr=False)
    # see phrase_numbers
    _numbers: dict[str, int] = field(default_factory=dict, repr=False)
    _next_number: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    def __post_init__(self) -> None:
        self.index = {pid: i for i, pid in enumerate(self.ids)}
        # which terms may come back by feedback: not pairs with a boilerplate word
        self.topical = np.zeros(self.n_terms, dtype=np.float32)
        for term, col in self.vocabulary.items():
            self.topical[col] = topical(term)
        self.binary = (self.matrix > 0).astype(np.float32).tocsr()
        self.df = np.bincount(self.binary.indices, minlength=self.n_terms)

    @property
    def n_terms(self) -> int:
        return len(self.vocabulary)

    def first_after(self, when: float) -> int:
        """Index of the first paper first seen strictly after ``when``."""
        return int(np.searchsorted(self.first_seen, when, side="right"))

    def spellings(self, phrase: str) -> list[tuple[str, ...]]:
        """Ways a paper can contain ``phrase``, each a tuple of terms it must all have: the
        phrase's word pairs (so "text-to-speech" meets "text to speech"), the phrase as one
        word ("pretraining"), an acronym the papers define for it ("TTS"), or for an acronym
        typed as a keyword, the phrase it stands for."""
        main = phrase_terms(phrase)
        out = [main] if main else []
        tokens = phrase_words(phrase)
        joined = joined_form(phrase)
        if joined is not None and joined in self.vocabulary and (joined,) not in out:
            out.append((joined,))
        out.extend((a,) for a in self.aliases.get(" ".join(tokens), ()))
        if len(tokens) == 1:
            out.extend(phrase_terms(long) for long in self.expansions.get(tokens[0], ()))
        return out

    def phrase_numbers(self, phrases: Sequence[str]) -> np.ndarray:
        """A number per phrase, the same in every chunk of readers, so what is kept per
        phrase (scoring.context's rows) is found by array lookups. From a counter: two
        scoring threads never hand out one number twice (a race only skips one). Past
        PHRASE_MEMO phrases they are forgotten, but no number is given again: a phrase met
        again gets a new one, and its row is computed again."""
        numbers, counter = self._numbers, self._next_number
        if len(numbers) >= PHRASE_MEMO:
            numbers.clear()
        return np.fromiter(
            (numbers.get(p) or numbers.setdefault(p, next(counter)) for p in phrases),
            np.int64,
            len(phrases),
        )

    def _remember(self, kind: str, phrase: str, compute):  # noqa: ANN001, ANN202
        key = (kind, phrase)
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) >= PHRASE_MEMO:
                self._memo.clear()
            found = self._memo[key] = compute(phrase)
        return found

    def match_clauses(self, phrase: str) -> list[tuple[str, ...]]:
        """Memoised :meth:`_match_clauses` (callers must not change what it returns)."""
        return self._remember("clauses", phrase, self._match_clauses)

    def key_terms(self, phrase: str) -> tuple[list[str], list[str], int]:
        """``(full, parts, missing)``: the terms a keyword phrase counts in full (its word
        pairs and other spellings, or its word if it is one word: a paper with any of them
        matches the phrase), its words (counted at a small share only), and how many of its
        own word pairs no paper uses."""
        vocab = self.vocabulary
        own = phrase_terms(phrase)
        segments = phrase_segments(phrase)
        full: list[str] = [*own]
        for i, spelling in enumerate(self.spellings(phrase)):
            full.extend(spelling if i else ())
        for seg in segments if len(segments) > 1 else ():
            if len(phrase_words(seg)) > 1:
                full.extend(t for spelling in self.spellings(seg) for t in spelling)
        missing = sum(1 for t in set(own) if t not in vocab)
        full = [t for t in dict.fromkeys(full) if t in vocab]
        tokens = phrase_words(phrase)
        parts = [t for t in dict.fromkeys(tokens) if len(tokens) > 1 and t in vocab]
        return full, [t for t in parts if t not in full], missing

    def _match_clauses(self, phrase: str) -> list[tuple[str, ...]]:
        """A paper matches a keyword phrase when it has all the terms of one clause: for each
        topic of the phrase ("explainable AI", "computer vision"), all its words in any order
        (a boilerplate word only next to its neighbour: "model compression"), or another
        spelling of the topic (one word, an acronym the papers define); or another spelling
        of the whole phrase. One word pair of a longer phrase, or one of its words, is not
        enough."""
        vocab = self.vocabulary
        segments = phrase_segments(phrase) or (phrase,)
        options: list[list[tuple[str, ...]]] = []
        for seg in segments:
            need = phrase_needs(seg)
            if not need:
                continue  # a lone boilerplate word ("methods for ...") asks for nothing
            alts = [need] if all(t in vocab for t in need) else []
            alts += [sp for sp in self.spellings(seg)[1:] if all(t in vocab for t in sp)]
            options.append(alts)
        clauses: list[tuple[str, ...]] = []
        if options and all(options):
            for combo in itertools.islice(itertools.product(*options), MAX_CLAUSES):
                clauses.append(tuple(dict.fromkeys(t for part in combo for t in part)))
        if len(segments) > 1:
            whole = self.spellings(phrase)[1:]
            clauses += [sp for sp in whole if all(t in vocab for t in sp)]
        return list(dict.fromkeys(clauses))

    def correct(self, phrase: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        """Memoised :meth:`_correct`."""
        return self._remember("correct", phrase, self._correct)

    def _correct(self, phrase: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        """``phrase`` with each word no paper uses replaced by the closest word papers do use
        (rapidfuzz), and the ``(typed, used)`` replacements: "contrastive learnig" ->
        ("contrastive learning", (("learnig", "learning"),))."""
        if not self.surface:
            return phrase, ()
        fixed: list[tuple[str, str]] = []
        out = phrase
        for word in dict.fromkeys(_TOKEN.findall(phrase.lower())):
            if len(word) < FUZZY_MIN_LENGTH or not word.isalpha() or word in STOP_WORDS:
                continue
            stem = fold(word)
            if stem in self.vocabulary or stem in STOP_WORDS:
                continue
            found = process.extractOne(
                word, self.surface, scorer=fuzz.ratio, score_cutoff=FUZZY_MIN_RATIO
            )
            if found is not None:
                fixed.append((word, found[0]))
                out = re.sub(rf"(?i)\b{re.escape(word)}\b", found[0], out)
        return out, tuple(fixed)


def build_model(
    rows: Sequence[tuple[str, str, str, datetime | None, int | None]],
    *,
    title_weight: float,
) -> PaperModel:
    """Fit on ``(id, title, abstract, first_seen_at, upvotes)`` rows."""
    rows = sorted(rows, key=lambda r: r[0])
    if rows:
        # each text tokenised once; the vocabulary is the terms of title and abstract read
        # as one text (with the word pair across the two), in sorted order
        found = [(tokens(r[1]), tokens(r[2] or "")) for r in rows]
        names = sorted({t for title, abstract in found for t in terms(title + abstract)})
        vocabulary = {term: i for i, term in enumerate(names)}
        titles = _counts([terms(title) for title, _ in found], vocabulary)
        abstracts = _counts([terms(abstract) for _, abstract in found], vocabulary)
        counts = (title_weight * titles + abstracts).tocsr()
        tfidf = TfidfTransformer(sublinear_tf=True, norm="l2").fit(counts)
        matrix = tfidf.transform(counts).tocsr().astype(np.float32)
        idf = tfidf.idf_.astype(np.float32)
    else:
        matrix = sp.csr_matrix((0, 0), dtype=np.float32)
        vocabulary, idf = {}, np.zeros(0, np.float32)
    seen = np.array(
        [(r[3] or datetime(1970, 1, 1, tzinfo=UTC)).timestamp() for r in rows], dtype=np.float64
    )
    written = {w for r in rows for w in _TOKEN.findall(f"{r[1]} {r[2] or ''}".lower())}
    surface = sorted(
        w for w in written if len(w) >= FUZZY_MIN_LENGTH and w.isalpha() and fold(w) in vocabulary
    )
    order = np.argsort(seen, kind="stable")
    return PaperModel(
        ids=np.array([r[0] for r in rows], dtype=object)[order],
        titles=[rows[i][1] for i in order],
        first_seen=seen[order],
        upvotes=np.array([float(r[4] or 0) for r in rows], dtype=np.float64)[order],
        matrix=matrix[order] if rows else matrix,
        vocabulary=vocabulary,
        idf=idf,
        surface=surface,
        **_acronyms(rows, vocabulary),
    )


def _counts(docs: list[list[str]], vocabulary: dict[str, int]) -> sp.csr_matrix:
    """Each doc's term counts, a row per doc (float64, sorted indices), as scikit-learn's
    CountVectorizer counts them, without its dict per doc and its second pass over the
    vocabulary: the model of 3,000 papers builds in 1.4 s of CPU, not 2.2."""
    cols = np.fromiter((vocabulary[t] for doc in docs for t in doc), dtype=np.int64)
    rows = np.repeat(np.arange(len(docs)), [len(doc) for doc in docs])
    shape = (len(docs), len(vocabulary))
    counts = sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=shape)
    counts.sum_duplicates()  # sorts the indices too
    return counts


def _acronyms(rows: Sequence[tuple], vocabulary: dict[str, int]) -> dict[str, Any]:
    """Acronyms defined in the papers, each read as the long form most papers give it."""
    seen: dict[str, Counter[str]] = {}
    for row in rows:
        for text in (row[1], row[2] or ""):
            for key, acronym in set(acronym_definitions(text)):
                seen.setdefault(acronym, Counter())[key] += 1
    aliases: dict[str, list[str]] = {}
    expansions: dict[str, tuple[str, ...]] = {}
    for acronym in sorted(seen):
        if acronym not in vocabulary:
            continue
        key = min(seen[acronym].items(), key=lambda kv: (-kv[1], kv[0]))[0]
        aliases.setdefault(key, []).append(acronym)
        expansions[acronym] = (key,)
    return {"aliases": {k: tuple(v) for k, v in aliases.items()}, "expansions": expansions}


def keyword_matrix(model: PaperModel, phrases: Sequence[str]) -> sp.csr_matrix:
    """One row per phrase: the terms it counts in full (:meth:`PaperModel.key_terms`)
    weighted by idf, and each word of a several-word segment at a small share of its idf,
    scaled by how rare the word is.

    A rare word of a phrase ("speech") still counts a little on its own; a common one
    ("text", "learning") next to nothing, so it cannot make a paper relevant. Each row is
    scaled as if every word pair of the phrase were in the vocabulary: a phrase no paper uses
    does not hand its weight to its words.
    """
    idf_max = float(model.idf.max(initial=1.0))
    return _phrase_rows(model, "row", phrases, lambda x: _keyword_row(model, x, idf_max))


def _phrase_rows(
    model: PaperModel,
    kind: str,
    phrases: Sequence[str],
    row: Callable[[str], tuple[list[int], list[float]]],
) -> sp.csr_matrix:
    """phrases x terms, each phrase's row ``(columns, values)`` from ``row``, memoised."""
    indptr, cols, data = [0], [], []
    for phrase in phrases:
        row_cols, row_data = model._remember(kind, phrase, row)
        cols.extend(row_cols)
        data.extend(row_data)
        indptr.append(len(cols))
    return sp.csr_matrix(
        (np.asarray(data, np.float32), np.asarray(cols, np.int64), np.asarray(indptr)),
        shape=(len(phrases), model.n_terms),
    )


def _keyword_row(model: PaperModel, phrase: str, idf_max: float) -> tuple[list[int], list[float]]:
    """One row of :func:`keyword_matrix`: term columns, ascending, and their weights."""
    vocab, idf = model.vocabulary, model.idf
    full, parts, missing = model.key_terms(phrase)
    weights = {vocab[t]: float(idf[vocab[t]]) for t in full}
    for t in parts:
        col = vocab[t]
        rarity = (idf[col] - 1.0) / max(idf_max - 1.0, 1e-6)
        weights[col] = COMPONENT_SHARE * float(idf[col]) * float(rarity) ** RARITY_POWER
    norm = np.sqrt(sum(w * w for w in weights.values()) + missing * idf_max**2)
    order = sorted(weights)
    return order, [weights[c] / norm if norm > 0 else 0.0 for c in order]


def feedback_signatures(model: PaperModel) -> sp.csr_matrix:
    """papers x terms, 1 for each paper's FEEDBACK_SIGNATURE strongest terms that may come
    back by feedback: topical (no pair with a boilerplate word) and in at most
    FEEDBACK_MAX_DF of the papers. Computed once per model."""
    found = model._memo.get(("signatures", ""))
    if found is None:
        n = max(model.matrix.shape[0], 1)
        allowed = model.topical * (model.df <= FEEDBACK_MAX_DF * n)
        weighed = model.matrix.multiply(allowed[None, :].astype(np.float32)).tocsr()
        weighed.eliminate_zeros()
        found = strongest_terms(weighed, FEEDBACK_SIGNATURE)
        found.data[:] = 1.0
        model._memo[("signatures", "")] = found
    return found


def shared_terms(model: PaperModel, weights: sp.csr_matrix, values: sp.csr_matrix) -> sp.csr_matrix:
    """RM3-like: for each row of ``weights`` (rows x papers, a row's weights alike and summing
    to 1), each signature term (:func:`feedback_signatures`) by the share of ``values`` (other
    weights of the same papers) that have it, times its idf, and only when FEEDBACK_SHARED of
    the row's papers have it (or all, if fewer): one paper's quirks are not the topic. A row
    of one paper gives nothing."""
    signatures = feedback_signatures(model)
    weights = weights.tocsr()
    shares = (weights @ signatures).tocsr()
    shares.sort_indices()
    counts = np.diff(weights.indptr)
    need = np.minimum(counts, FEEDBACK_SHARED).astype(np.float32)
    floor = np.where(counts >= 2, (need - 0.5) / np.maximum(counts, 1), np.inf)
    keep = shares.data >= np.repeat(floor, np.diff(shares.indptr))
    shares = (values.tocsr() @ signatures).tocsr()
    shares.sort_indices()
    shares.data[~keep] = 0
    shares = shares.multiply(model.idf[None, :]).tocsr()
    shares.eliminate_zeros()
    return shares


def strongest_terms(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Each row cut to its ``k`` largest entries."""
    indptr, cols, vals = topk_rows(matrix.tocsr(), k)
    out = sp.csr_matrix((vals, cols, indptr), shape=matrix.shape)
    out.sort_indices()
    return out


def near_words(model: PaperModel, phrases: Sequence[str]) -> sp.csr_matrix:
    """phrases x terms, 1 for each content word of a phrase that is in at most NEAR_MAX_DF of
    the papers: the words a paper must share with a reader's keywords to be close."""
    limit = NEAR_MAX_DF * max(model.matrix.shape[0], 1)
    return _phrase_rows(model, "near", phrases, lambda x: _near_row(model, x, limit))


def _near_row(model: PaperModel, phrase: str, limit: float) -> tuple[list[int], list[float]]:
    found = (model.vocabulary.get(w) for w in dict.fromkeys(phrase_words(phrase)))
    cols = sorted(c for c in found if c is not None and model.df[c] <= limit)
    return cols, [1.0] * len(cols)


def phrase_match_matrix(
    model: PaperModel, phrases: Sequence[str], lo: int = 0, hi: int | None = None
) -> sp.csr_matrix:
    """phrases x papers[lo:hi], 1 where the paper matches the phrase: it has all the terms of
    one of the phrase's clauses (:meth:`PaperModel.match_clauses`)."""
    indptr, cols, need, owner = [0], [], [], []
    vocab = model.vocabulary
    for p, phrase in enumerate(phrases):
        for clause in model.match_clauses(phrase):
            cols.extend(sorted(vocab[t] for t in clause))
            indptr.append(len(cols))
            need.append(len(clause))
            owner.append(p)
    q = sp.csr_matrix(
        (np.ones(len(cols), np.float32), np.asarray(cols, np.int64), np.asarray(indptr)),
        shape=(len(need), model.n_terms),
    )
    counts = (q @ model.binary[lo:hi].T).tocsr()
    rows = np.repeat(np.arange(len(need)), np.diff(counts.indptr))
    counts.data = (counts.data >= np.asarray(need, np.float32)[rows]).astype(np.float32)
    counts.eliminate_zeros()
    of_phrase = sp.csr_matrix(
        (np.ones(len(owner), np.float32), (np.asarray(owner, np.int64), np.arange(len(owner)))),
        shape=(len(phrases), len(need)),
    )
    hits = (of_phrase @ counts).tocsr()
    hits.data[:] = 1.0
    return hits


# --- loading from the store, cached per process ---------------------------------------------

_CACHE: dict[tuple[str, float], PaperModel] = {}
_LOCK = threading.Lock()


def _fingerprint(store: Store) -> str:
    with store.session() as session:
        count, newest, oldest = session.execute(
            select(func.count(Paper.id), func.max(Paper.updated_at), func.min(Paper.id))
        ).one()
    return hashlib.sha256(f"{count}|{newest}|{oldest}".encode()).hexdigest()[:16]


def load_model(store: Store, *, title_weight: float = 2.0) -> PaperModel:
    """The model of the store's papers, fitted again only when the papers changed."""
    fingerprint = _fingerprint(store)
    key = (store.url, title_weight)
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is not None and cached.fingerprint == fingerprint:
            return cached
    with store.session() as session:
        rows = session.execute(
            select(Paper.id, Paper.title, Paper.abstract, Paper.first_seen_at, Paper.upvotes)
        ).all()
    model = build_model([tuple(r) for r in rows], title_weight=title_weight)  # type: ignore[misc]
    model.fingerprint = fingerprint
    with _LOCK:
        _CACHE[key] = model
    return model
