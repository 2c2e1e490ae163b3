"""Turning text into terms: lower-case words, English stop words out, words stemmed,
and adjacent pairs kept as phrases ("sparse autoencoder"); other spellings of a phrase (one
word, "pretraining"; an acronym the papers define, "text-to-speech (TTS)")."""

from __future__ import annotations

import re
from functools import lru_cache

import snowballstemmer
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

# hyphens and slashes split words, so "pre-training" meets "pre training" and "pretraining"
# only where the authors agree; digits stay inside tokens ("llama2", "gpt4")
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
# words that carry no topic in paper abstracts, on top of general English stop words
_PAPER_STOP = frozenset(
    """paper propose proposed proposes present presents presented approach approaches method
    methods results result show shows shown demonstrate demonstrates demonstrated novel new
    state art existing recent recently work works based using use used study studies task tasks
    performance framework model models achieve achieves achieved significant significantly
    experiments experimental extensive introduce introduces various different including
    furthermore moreover however address code available github com https http www et al""".split()
)
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS) | _PAPER_STOP


_STEMMER = snowballstemmer.stemmer("english")


@lru_cache(maxsize=500_000)
def fold(word: str) -> str:
    """The Snowball (Porter 2) stem: "quantization", "quantized" and "quantize" meet."""
    return _STEMMER.stemWord(word) if word.isalpha() else word


def words(text: str) -> list[str]:
    """Content words of ``text``, folded, in order."""
    out = []
    for token in _TOKEN.findall(text.lower()):
        if len(token) < 2 or token in STOP_WORDS:
            continue
        folded = fold(token)
        if folded not in STOP_WORDS:
            out.append(folded)
    return out


def analyze(text: str) -> list[str]:
    """Unigrams plus adjacent pairs of content words: the vectoriser's analyzer."""
    tokens = words(text)
    return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]


@lru_cache(maxsize=200_000)
def phrase_analysis(phrase: str) -> tuple[str, ...]:
    """:func:`analyze` of a keyword phrase, cached: readers type the same phrases."""
    return tuple(analyze(phrase))


@lru_cache(maxsize=200_000)
def phrase_terms(phrase: str) -> tuple[str, ...]:
    """The terms a paper must contain for ``phrase`` to count as matched: its word pairs,
    or its single word."""
    tokens = words(phrase)
    if len(tokens) <= 1:
        return tuple(tokens)
    return tuple(f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False))


@lru_cache(maxsize=200_000)
def phrase_words(phrase: str) -> tuple[str, ...]:
    """:func:`words` of a keyword phrase, cached."""
    return tuple(words(phrase))


# words that join two topics in a keyword ("explainable AI for computer vision"); "to" is not
# one of them: "text to speech" is one topic, like "text-to-speech"
SEPARATORS = frozenset("for of in on with and or via using from by at about towards".split())


@lru_cache(maxsize=200_000)
def phrase_segments(phrase: str) -> tuple[str, ...]:
    """The topics of a keyword phrase, split at joining words: "explainable AI for computer
    vision" -> ("explainable AI", "computer vision"). A hyphenated word is never split."""
    segments: list[list[str]] = [[]]
    for chunk in phrase.split():
        if chunk.lower() in SEPARATORS:
            segments.append([])
        elif words(chunk):
            segments[-1].append(chunk)
    return tuple(" ".join(s) for s in segments if s)


@lru_cache(maxsize=200_000)
def joined_form(phrase: str) -> str | None:
    """The phrase written as one word ("pre-training" -> "pretrain", "data set" -> "dataset"),
    or None when it is one word already."""
    tokens = _TOKEN.findall(phrase.lower())
    if len(tokens) < 2:
        return None
    found = words("".join(tokens))
    return found[0] if len(found) == 1 else None


# "text-to-speech (TTS)", "large language models (LLMs)": a long form, then its acronym
_ACRONYM = re.compile(r"\(\s*([A-Za-z][A-Za-z0-9]{1,9}?)s?\s*\)")
_LONG_WORDS = 10


def _spells(acronym: str, long_tokens: list[str]) -> bool:
    """Schwartz-Hearst: the acronym's letters appear in order in the long form, read right to
    left, its first letter being the long form's first letter."""
    text = " ".join(long_tokens)
    t = len(text) - 1
    for a in range(len(acronym) - 1, 0, -1):
        t = text.rfind(acronym[a], 1, t + 1) - 1
        if t < 0:
            return False
    return text[0] == acronym[0]


def acronym_definitions(text: str) -> list[tuple[str, str]]:
    """``(phrase key, acronym term)`` pairs defined in ``text``: "text-to-speech (TTS)" gives
    ("text speech", "tts"). The phrase key is the long form's content words, space-joined."""
    out = []
    for m in _ACRONYM.finditer(text):
        acronym = m.group(1)
        if sum(ch.isupper() for ch in acronym) < 2:
            continue
        before = _TOKEN.findall(text[max(0, m.start() - 200) : m.start()].lower())
        letters = acronym.lower()
        # the shortest run of trailing words that spells the acronym, stop words allowed
        for n in range(1, min(len(letters) + 3, _LONG_WORDS, len(before)) + 1):
            long_tokens = before[-n:]
            if long_tokens[0][0] != letters[0] or not _spells(letters, long_tokens):
                continue
            content = words(" ".join(long_tokens))
            term = words(acronym)
            if len(content) >= 2 and len(term) == 1:
                out.append((" ".join(content), term[0]))
            break
    return out
