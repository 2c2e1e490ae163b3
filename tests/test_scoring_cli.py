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
    assert "Sparse Autoencoder" in titles and "Mechanistic Interpretability" in titles
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


def test_labelled_set_is_well_formed() -> None:
    data = json.loads((ROOT / "tests" / "data" / "relevance.json").read_text())
    profiles = data["profiles"]
    assert len(profiles) >= 8
    for p in profiles:
        assert p["keywords"].strip() and len(p["relevant"]) >= 4
        assert set(p["relevant"].values()) <= {1, 2} and 2 in p["relevant"].values()


def test_scorer_beats_both_baselines_on_the_labelled_set(capsys: pytest.CaptureFixture) -> None:
    bench = _bench()
    import sys

    sys.argv = ["relevance.py", "--json"]
    bench.main()
    results = json.loads(capsys.readouterr().out)["results"]
    ours = results["digestbot"]
    for baseline in ("tfidf-cosine", "bm25"):
        assert ours["ndcg@10"] > results[baseline]["ndcg@10"], baseline
        assert ours["p@10"] > results[baseline]["p@10"], baseline
