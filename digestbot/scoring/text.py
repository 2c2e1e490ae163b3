"""Turning text into terms: lower-case words, English stop words out, words stemmed,
and adjacent pairs kept as phrases ("sparse autoencoder"); other spellings of a phrase (one
word, "pretraining"; an acronym the papers define, "text-to-speech (TTS)").

Words that carry no topic on their own in a paper ("model", "use", "method") are not terms by
themselves, but they stay inside phrases: "model compression", "tool use" and "diffusion
models" are pairs, so a reader's phrase keeps all its words."""

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
_VOWELS = frozenset("aeiouy")
# stems of one word family that Snowball leaves apart ("explanations" -> explan, "explainable"
# -> explain) or near-synonyms readers use for each other ("Visual Transformer")
_SAME_STEM = {"explan": "explain", "visual": "vision"}


@lru_cache(maxsize=500_000)
def fold(word: str) -> str:
    """The Snowball (Porter 2) stem: "quantization", "quantized" and "quantize" meet; an
    acronym's plural loses its "s" ("LLMs" -> llm, "CNNs" -> cnn)."""
    if not word.isalpha():
        return word
    if len(word) >= 4 and word.endswith("s") and not _VOWELS & set(word[:-1]):
        return word[:-1]
    stem = _STEMMER.stemWord(word)
    return _SAME_STEM.get(stem, stem)


# the stems of paper boilerplate words ("propos", "model")
_BOILERPLATE_STEMS = frozenset(fold(w) for w in _PAPER_STOP)


def topical(term: str) -> bool:
    """A term that names a topic by itself: a content word, or a pair of two (not a pair with
    a boilerplate word such as "issu propos", which only counts inside a reader's phrase)."""
    return not any(part in _BOILERPLATE_STEMS for part in term.split(" "))


def tokens(text: str) -> list[tuple[str, bool]]:
    """``(folded word, is a content word)`` for each word of ``text`` that is not an English
    stop word; a word of paper boilerplate ("model", "use") is not a content word."""
    out = []
    for token in _TOKEN.findall(text.lower()):
        if len(token) < 2 or token in ENGLISH_STOP_WORDS:
            continue
        folded = fold(token)
        out.append((folded, token not in STOP_WORDS and folded not in STOP_WORDS))
    return out


def words(text: str) -> list[str]:
    """Content words of ``text``, folded, in order."""
    return [w for w, content in tokens(text) if content]


def _pairs(found: list[tuple[str, bool]]) -> list[str]:
    """Adjacent pairs with at least one content word: "model compress", not "propos novel"."""
    return [f"{a} {b}" for (a, x), (b, y) in zip(found, found[1:], strict=False) if x or y]


def terms(found: list[tuple[str, bool]]) -> list[str]:
    """The content words of :func:`tokens` ``found`` in a text, plus its adjacent word
    pairs: the vectoriser's analyzer."""
    return [w for w, content in found if content] + _pairs(found)


@lru_cache(maxsize=200_000)
def phrase_terms(phrase: str) -> tuple[str, ...]:
    """The terms that stand for ``phrase`` in full: its word pairs, or its single content
    word ("model compression" -> "model compress"; "models" alone has none)."""
    found = tokens(phrase)
    if len(found) <= 1:
        return tuple(w for w, content in found if content)
    return tuple(_pairs(found))


@lru_cache(maxsize=200_000)
def phrase_words(phrase: str) -> tuple[str, ...]:
    """:func:`words` of a keyword phrase, cached."""
    return tuple(words(phrase))


@lru_cache(maxsize=200_000)
def phrase_needs(phrase: str) -> tuple[str, ...]:
    """What a paper must have for ``phrase`` to match by its words: every content word (in
    any order), and the pair of each boilerplate word with its neighbour, which only counts
    next to it ("model compression" -> "model compress"; "dense retrieval" -> dense, retriev)."""
    found = tokens(phrase)
    if all(content for _, content in found):
        return tuple(dict.fromkeys(w for w, _ in found))
    need = [w for w, content in found if content]
    for i, (word, content) in enumerate(found):
        if content:
            continue
        if i > 0 and (found[i - 1][1] or i + 1 == len(found)):
            need.append(f"{found[i - 1][0]} {word}")
        if i + 1 < len(found) and found[i + 1][1]:
            need.append(f"{word} {found[i + 1][0]}")
    return tuple(dict.fromkeys(need))


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
        elif tokens(chunk):
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
