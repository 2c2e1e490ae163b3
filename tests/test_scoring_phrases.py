"""Keyword phrases and the no-padding rule: a phrase counts as itself (in its spellings), its
common words cannot make a paper relevant, and a digest holds only papers that match a
keyword or resemble a liked one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digestbot.scoring import rank_profile, score_subscribers
from digestbot.scoring.engine import LIKED_MIN_SIMILARITY
from digestbot.scoring.model import load_model, phrase_match_matrix
from digestbot.scoring.text import acronym_definitions, phrase_segments
from digestbot.store import Store
from digestbot.store.subscribers import add_subscriber

from .test_scoring import add_papers

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)

PAPERS = {
    "tts-hyphen": (
        "Fast text-to-speech with flow matching",
        "A non-autoregressive model synthesises natural speech from text in one step.",
    ),
    "tts-spaced": (
        "A text to speech system for low-resource languages",
        "We build speech synthesis voices from a few hours of recordings.",
    ),
    "tts-defined": (
        "Expressive prosody for neural voices",
        "We present an expressive text-to-speech (TTS) model with controllable prosody.",
    ),
    "tts-acronym": (
        "Zero-shot TTS for regional dialects",
        "Our TTS system adapts to an unseen dialect from a short prompt.",
    ),
    "asr": (
        "Multilingual speech recognition at scale",
        "One multilingual acoustic model transcribes speech in a hundred languages.",
    ),
    "audio": (
        "Audio tagging with convolutional transformers",
        "We label environmental audio clips with sound event classes.",
    ),
    "text-seg": (
        "Structural text segmentation of legal documents",
        "Long legal text is split into sections by a topic change detector.",
    ),
    "text-img": (
        "Text-guided image editing with latent diffusion",
        "Editing images from text instructions with a diffusion model.",
    ),
    "text-cls": (
        "Text classification with graph networks",
        "Documents become graphs of words for text classification.",
    ),
    "pre-hyphen": (
        "Pre-training vision encoders on web images",
        "Large-scale pre-training of image encoders with captions.",
    ),
    "pre-joined": (
        "Efficient pretraining of protein language encoders",
        "Protein sequences are used for pretraining compact encoders.",
    ),
    "graph-a": (
        "Graph neural networks for molecule property prediction",
        "Message passing graph neural networks predict molecule properties.",
    ),
    "graph-b": (
        "Scaling graph neural networks for molecule generation",
        "Message passing graph neural networks generate molecules with properties.",
    ),
}
SPEECH = ["tts-hyphen", "tts-spaced", "tts-defined", "tts-acronym"]


@pytest.fixture
def papers(store: Store) -> Store:
    return add_papers(store, PAPERS)


def ids(picks: list) -> list[str]:
    return [p.paper_id for p in picks]


def test_maria_gets_no_papers_that_only_share_the_word_text(papers: Store, config) -> None:
    picks = rank_profile(
        papers, keywords="speech, audio, multilingual, text-to-speech", top=10, config=config
    )
    assert set(ids(picks)) == {*SPEECH, "asr", "audio"}  # fewer than 10: no padding
    assert all(p.matched for p in picks)
    assert next(p for p in picks if p.paper_id == "tts-hyphen").matched == (
        "speech",
        "text-to-speech",
    )
    # without the rule, the "text" papers come only after every real match
    loose = rank_profile(
        papers,
        keywords="speech, audio, multilingual, text-to-speech",
        top=10,
        config=config.replace(scoring__require_match=False),
    )
    text_only = [i for i, p in enumerate(loose) if p.paper_id.startswith("text-")]
    assert text_only and min(text_only) >= 6


def test_a_hyphenated_phrase_matches_its_spellings(papers: Store, config) -> None:
    for typed in ("text-to-speech", "text to speech", "Text-To-Speech", "TTS"):
        picks = rank_profile(papers, keywords=typed, top=10, config=config)
        # papers close to the matches may follow them (scoring.close_share), unmatched
        assert set(ids(p for p in picks if p.matched)) == set(SPEECH), typed
    # the one-word spelling of a hyphenated phrase
    picks = rank_profile(papers, keywords="pre-training", top=10, config=config)
    assert set(ids(picks)) == {"pre-hyphen", "pre-joined"}
    model = load_model(papers, title_weight=config["scoring.title_weight"])
    assert model.aliases["text speech"] == ("tts",)
    hits = phrase_match_matrix(model, ["text-to-speech", "text"]).toarray()
    assert hits[0, model.index["tts-acronym"]] == 1 and hits[0, model.index["text-seg"]] == 0
    assert hits[1, model.index["text-seg"]] == 1


def test_phrase_helpers() -> None:
    assert phrase_segments("explainable AI for computer vision") == (
        "explainable AI",
        "computer vision",
    )
    assert phrase_segments("text to speech") == ("text speech",)
    assert acronym_definitions("Large language models (LLMs) and text-to-speech (TTS).") == [
        ("larg languag", "llm"),
        ("text speech", "tts"),
    ]
    assert acronym_definitions("the model (GPT) at (W)") == []


def test_a_liked_paper_brings_similar_papers_without_keyword_matches(papers: Store, config) -> None:
    picks = rank_profile(papers, keywords="audio", liked=["graph-a"], top=10, config=config)
    assert ids(picks)[0] in {"graph-b", "audio"}
    graph = next(p for p in picks if p.paper_id == "graph-b")
    assert graph.matched == () and graph.similar_to == "graph-a"
    # every pick either matches a keyword or is close enough to the liked paper
    model = load_model(papers, title_weight=config["scoring.title_weight"])
    liked = model.matrix[model.index["graph-a"]]
    for p in picks:
        sim = float((model.matrix[model.index[p.paper_id]] @ liked.T).toarray()[0, 0])
        assert p.matched or sim >= LIKED_MIN_SIMILARITY


def test_no_padding_in_digests_on_both_paths(papers: Store, config) -> None:
    with papers.session() as s:
        maria = add_subscriber(
            s, email="m@example.org", keywords="speech, audio, multilingual, text-to-speech"
        )
        generic = add_subscriber(s, email="g@example.org", keywords="text")
        nothing = add_subscriber(s, email="n@example.org", keywords="protein folding dynamics")
    subs = (maria, generic, nothing)
    fast = [x.picks for x in score_subscribers(papers, subs, now=NOW, config=config)]
    # a recency boost takes the path that scores every pair; it only reorders
    boosted = config.replace(scoring__recency_weight=1e-6)
    exact = [x.picks for x in score_subscribers(papers, subs, now=NOW, config=boosted)]
    assert set(ids(fast[0])) == set(ids(exact[0])) == {*SPEECH, "asr", "audio"}
    # a one-word keyword still matches by itself, however common
    assert {"text-seg", "text-img", "text-cls"} <= set(ids(fast[1]))
    assert set(ids(fast[1])) == set(ids(exact[1]))
    assert fast[2] == exact[2] == []  # an empty digest, not one filled with the nearest papers
    loose = config.replace(scoring__require_match=False)
    padded = [x.picks for x in score_subscribers(papers, subs, now=NOW, config=loose)]
    assert len(padded[0]) > len(fast[0])
    assert all(p.matched for p in fast[0])


def test_the_phrase_memo_returns_what_a_fresh_model_computes(papers: Store, config) -> None:
    """keyword_matrix rows and match clauses are remembered per phrase across chunks; asking
    again, or after the memo started over, gives the same matrices."""
    from digestbot.scoring import model as paper_model
    from digestbot.scoring.model import keyword_matrix

    model = load_model(papers, title_weight=config["scoring.title_weight"])
    phrases = ["text-to-speech", "speech recognition", "tts", "explainable ai for vision"]
    first = (keyword_matrix(model, phrases), phrase_match_matrix(model, phrases))
    again = (keyword_matrix(model, phrases), phrase_match_matrix(model, phrases))
    model._memo.clear()
    fresh = (keyword_matrix(model, phrases), phrase_match_matrix(model, phrases))
    for a, b, c in zip(first, again, fresh, strict=True):
        assert (a != b).nnz == 0 and (a != c).nnz == 0
    assert first[0].nnz and first[1].nnz
    assert len(model._memo) == 2 * len(phrases) <= paper_model.PHRASE_MEMO
