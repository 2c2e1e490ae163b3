"""`digestbot rank` on the ingested seeds, and the relevance of the scorer on the labelled set."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from digestbot.cli import main
from digestbot.store import open_store

from .conftest import ROOT
from .test_scoring_seeds import load_seeds


@pytest.fixture
def seeded(runner: CliRunner, tmp_path: Path) -> str:
    db = str(tmp_path / "seeds.db")
    store = open_store(db)
    load_seeds(store)
    store.dispose()
    return db


def test_rank_json_on_the_seeds(runner: CliRunner, seeded: str) -> None:
    r = runner.invoke(
        main,
        [
            "rank",
            "--db",
            seeded,
            "--keywords",
            "sparse autoencoders, mechanistic interpretability",
            "--top",
            "5",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert len(rows) == 5
    assert [sorted(row) for row in rows] == [["id", "score", "title", "why"]] * 5
    assert rows[0]["score"] >= rows[-1]["score"] > 0
    titles = " ".join(row["title"] for row in rows)
    assert "Sparse Autoencoder" in titles
    r = runner.invoke(
        main, ["rank", "--db", seeded, "-k", "mechanistic interpretability", "--json"]
    )
    assert "Mechanistic Interpretability" in " ".join(row["title"] for row in json.loads(r.output))
    for row in rows:
        assert set(row["why"]) == {"matched", "similar_to", "similar_title"}
        assert row["why"]["matched"], row["title"]
    liked = rows[0]["id"]
    r = runner.invoke(main, ["rank", "--db", seeded, "--liked", liked, "-n", "3", "--json"])
    more = json.loads(r.output)
    assert liked not in [m["id"] for m in more]
    assert {m["why"]["similar_to"] for m in more} == {liked}


def test_rank_text_and_errors(runner: CliRunner, seeded: str) -> None:
    r = runner.invoke(main, ["rank", "--db", seeded, "-k", "time series forecasting", "-n", "2"])
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert lines[0].startswith("  1. ") and "Time Series Forecasting" in lines[0]
    assert lines[1] == "       matches time series forecasting"
    assert lines[2].startswith("  2. ")
    r = runner.invoke(main, ["rank", "--db", seeded])
    assert (r.exit_code, r.output.splitlines()[-1]) == (
        2,
        "Error: give --keywords or --liked to rank by, e.g. "
        "digestbot rank --keywords 'sparse autoencoders, interpretability'",
    )
    r = runner.invoke(main, ["rank", "--db", seeded, "-k", "x", "--liked", "nope"])
    assert r.exit_code == 1 and r.output.startswith("Error: liked: unknown paper id 'nope'\n")
    r = runner.invoke(main, ["rank", "--db", seeded, "-k", "zyzzyva quuxification"])
    assert (r.exit_code, r.output) == (0, "No paper matches.\n")


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_relevance", ROOT / "bench" / "relevance.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_judged_set_is_well_formed() -> None:
    data = json.loads((ROOT / "tests" / "data" / "relevance.json").read_text())
    profiles = data["profiles"]
    assert len(profiles) >= 40
    assert sum(1 for p in profiles if len(p.get("liked", ())) == 2) >= 10
    halves = {p["split"] for p in profiles}
    assert halves == {"tune", "report"}
    for p in profiles:
        assert p.get("keywords", "").strip() or p.get("liked")
        assert len(p["judged"]) >= 20  # a pool, not only the relevant papers
        assert set(p["judged"].values()) <= {0, 1, 2} and max(p["judged"].values()) >= 1
        assert not set(p.get("liked", ())) & set(p["judged"])


def test_scorer_beats_the_baselines_on_the_reporting_half(capsys: pytest.CaptureFixture) -> None:
    """Issue 14's targets on judgments the parameters were not chosen on: the default
    install 0.03 above BM25, the semantic extra (set up as the README says) 0.03 above the
    BM25 + MiniLM z-score sum, neither showing more off-topic papers than before issue 14."""
    bench = _bench()
    import sys

    sys.argv = ["relevance.py", "--json"]
    bench.main()
    out = json.loads(capsys.readouterr().out)
    assert out["half"] == "report"
    results = out["results"]
    ours = results["digestbot"]
    assert ours["ndcg@10"] >= results["bm25"]["ndcg@10"] + 0.03
    for baseline in ("tfidf-cosine", "bm25"):
        assert ours["ndcg@10"] > results[baseline]["ndcg@10"], baseline
        assert ours["p@10"] > results[baseline]["p@10"], baseline
    assert ours["off_topic"] <= bench.BEFORE_OFF_TOPIC
    extra = results["+close+semantic"]
    assert extra["ndcg@10"] >= results["bm25+minilm"]["ndcg@10"] + 0.03
    assert extra["ndcg@10"] > results["minilm"]["ndcg@10"]
    assert extra["off_topic"] <= bench.BEFORE_OFF_TOPIC
    assert all(line.endswith(": met") for line in bench.targets(results))


def test_rank_explain_shows_every_part_of_the_score(runner: CliRunner, seeded: str) -> None:
    profile = ["-k", "computational neuroscience, neural recordings"]
    # pseudo-relevance feedback on (off by default), so that it is a part of the score
    env = {"DIGESTBOT_SCORING_FEEDBACK_WEIGHT": "1.5", "DIGESTBOT_SCORING_CLOSE_SHARE": "0.2"}
    r = runner.invoke(main, ["rank", "--db", seeded, *profile, "--json", "-n", "5"], env=env)
    picks = json.loads(r.output)
    for pick in picks:
        r = runner.invoke(
            main, ["rank", "--db", seeded, *profile, "--explain", pick["id"], "--json"], env=env
        )
        assert r.exit_code == 0, r.output
        found = json.loads(r.output)
        parts = {p["name"]: p["contribution"] for p in found["parts"]}
        assert set(parts) == {"keywords", "feedback"}
        # the parts add up to the score the ranking printed
        assert sum(parts.values()) == pytest.approx(found["similarity"], abs=1e-4)
        assert found["score"] == pytest.approx(pick["score"], abs=1e-3)
        assert found["rank"] == picks.index(pick) + 1
        assert found["why_allowed"].startswith(("matches the keywords", "close: at least"))
    # a picked paper no keyword matches says it is there for being close
    close = next(p for p in picks if not p["why"]["matched"])
    r = runner.invoke(main, ["rank", "--db", seeded, *profile, "--explain", close["id"]], env=env)
    assert "keywords" in r.output and "feedback" in r.output
    assert "allowed: close: at least 0.2 x the best match's" in r.output
    # liked papers are a part of their own
    r = runner.invoke(
        main, ["rank", "--db", seeded, "--liked", picks[0]["id"], "--explain", picks[1]["id"]]
    )
    assert r.exit_code == 0 and "  liked " in r.output, r.output
    r = runner.invoke(main, ["rank", "--db", seeded, *profile, "--explain", "nope"])
    assert r.exit_code == 1 and r.output.startswith("Error: explain: unknown paper id 'nope'")


def test_rank_explain_shows_the_context_weight(runner: CliRunner, seeded: str) -> None:
    profile = ["-k", "vision transformer, segmentation, object detection, 3D"]
    env = {"DIGESTBOT_SCORING_CONTEXT": "true"}
    r = runner.invoke(main, ["rank", "--db", seeded, *profile, "--json", "-n", "30"], env=env)
    picks = json.loads(r.output)
    legal = next(
        p for p in picks if p["title"] == "Structural Text Segmentation of Legal Documents"
    )
    assert picks.index(legal) >= 10  # out of a ten-paper digest
    r = runner.invoke(
        main, ["rank", "--db", seeded, *profile, "--explain", legal["id"], "--json"], env=env
    )
    found = json.loads(r.output)
    assert 0 < found["context"] < 0.5 and found["context_paper"]
    assert found["score"] == pytest.approx(found["similarity"] * found["context"], abs=1e-4)
    assert found["score"] == pytest.approx(legal["score"], abs=1e-3)
    r = runner.invoke(main, ["rank", "--db", seeded, *profile, "--explain", legal["id"]], env=env)
    assert r.exit_code == 0, r.output
    assert f"x context {found['context']:.4f}" in r.output
    assert f"  context: {found['context']:.4f}, the paper of another keyword" in r.output
    assert found["context_paper"] in r.output
