"""Relevance on the hand-labelled set (tests/data/relevance.json): nDCG@10 and P@10 for
digestbot's scorer and two baselines, scikit-learn's default TfidfVectorizer with cosine
similarity, and BM25 (k1=1.5, b=0.75).

    .venv/bin/python bench/relevance.py [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sqlalchemy import select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digestbot.config import default_config  # noqa: E402
from digestbot.scoring import rank_profile  # noqa: E402
from digestbot.store import Paper, Store, open_store  # noqa: E402

LABELS = ROOT / "tests" / "data" / "relevance.json"
K = 10


def load_store(folder: Path) -> Store:
    from digestbot.ingest import ingest_paths

    store = open_store(folder / "relevance.db")
    ingest_paths(store, [ROOT / "seeds"])
    return store


def ndcg(ranked: Sequence[str], grades: dict[str, int], k: int = K) -> float:
    gain = sum((2 ** grades.get(pid, 0) - 1) / math.log2(i + 2) for i, pid in enumerate(ranked[:k]))
    ideal = sorted(grades.values(), reverse=True)[:k]
    best = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return gain / best if best else 0.0


def precision(ranked: Sequence[str], grades: dict[str, int], k: int = K) -> float:
    return sum(1 for pid in ranked[:k] if grades.get(pid, 0) > 0) / k


def tfidf_ranker(ids: list[str], docs: list[str]) -> Callable[[str], list[str]]:
    vec = TfidfVectorizer()
    matrix = vec.fit_transform(docs)

    def rank(query: str) -> list[str]:
        scores = (matrix @ vec.transform([query]).T).toarray().ravel()
        return [ids[i] for i in np.argsort(-scores, kind="stable")[:K] if scores[i] > 0]

    return rank


def bm25_ranker(ids: list[str], docs: list[str], k1: float = 1.5, b: float = 0.75):
    vec = CountVectorizer(stop_words="english")
    tf = vec.fit_transform(docs).tocsc().astype(np.float64)
    n = tf.shape[0]
    df = np.diff(tf.indptr)
    idf = np.log((n - df + 0.5) / (df + 0.5) + 1.0)
    lengths = np.asarray(tf.sum(axis=1)).ravel()
    norm = k1 * (1 - b + b * lengths / lengths.mean())
    analyzer = vec.build_analyzer()

    def rank(query: str) -> list[str]:
        scores = np.zeros(n)
        for term in set(analyzer(query)):
            col = vec.vocabulary_.get(term)
            if col is None:
                continue
            rows = tf.indices[tf.indptr[col] : tf.indptr[col + 1]]
            f = tf.data[tf.indptr[col] : tf.indptr[col + 1]]
            scores[rows] += idf[col] * f * (k1 + 1) / (f + norm[rows])
        return [ids[i] for i in np.argsort(-scores, kind="stable")[:K] if scores[i] > 0]

    return rank


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    labels = json.loads(LABELS.read_text(encoding="utf-8"))["profiles"]
    config = default_config()
    with tempfile.TemporaryDirectory() as tmp:
        store = load_store(Path(tmp))
        with store.session() as s:
            rows = s.execute(select(Paper.id, Paper.title, Paper.abstract).order_by(Paper.id))
            rows = rows.all()
        by_title = {title: pid for pid, title, _ in rows}
        ids = [r[0] for r in rows]
        docs = [f"{r[1]}\n{r[2]}" for r in rows]
        rankers: dict[str, Callable[[str], list[str]]] = {
            "digestbot": lambda q: [
                p.paper_id for p in rank_profile(store, keywords=q, top=K, config=config)
            ],
            "tfidf-cosine": tfidf_ranker(ids, docs),
            "bm25": bm25_ranker(ids, docs),
        }
        results: dict[str, dict[str, float]] = {}
        per_profile: dict[str, list[float]] = {name: [] for name in rankers}
        for name, ranker in rankers.items():
            nd, pr = [], []
            for profile in labels:
                missing = [t for t in profile["relevant"] if t not in by_title]
                if missing:
                    raise SystemExit(f"labelled title not in the store: {missing[0]!r}")
                grades = {by_title[t]: g for t, g in profile["relevant"].items()}
                ranked = ranker(profile["keywords"])
                nd.append(ndcg(ranked, grades))
                pr.append(precision(ranked, grades))
            per_profile[name] = nd
            results[name] = {"ndcg@10": float(np.mean(nd)), "p@10": float(np.mean(pr))}
        store.dispose()
    if args.json:
        print(json.dumps({"profiles": len(labels), "results": results}, indent=2))
        return
    print(
        f"relevance on {len(labels)} labelled profiles, {len(ids)} seed papers "
        f"(cpu_count={os.cpu_count()})"
    )
    print(f"{'scorer':<14}{'nDCG@10':>9}{'P@10':>8}")
    for name, r in results.items():
        print(f"{name:<14}{r['ndcg@10']:>9.3f}{r['p@10']:>8.3f}")
    print("per profile nDCG@10 (digestbot / tfidf / bm25):")
    for i, profile in enumerate(labels):
        row = " / ".join(f"{per_profile[n][i]:.2f}" for n in rankers)
        print(f"  {profile['keywords'][:60]:<62}{row}")


if __name__ == "__main__":
    main()
