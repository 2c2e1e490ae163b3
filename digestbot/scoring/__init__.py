"""Scoring: which new papers each subscriber gets, and why.

Papers become TF-IDF vectors (title above abstract, word pairs kept as phrases); a
subscriber's profile is their keywords plus the centroid of papers they liked, minus a share
of those they disliked (Rocchio); all profiles of a chunk meet all candidate papers in one
sparse matrix product.
"""

from __future__ import annotations

import importlib
from typing import Any

# Importing scikit-learn and SciPy costs about a second; commands that never score (and
# `digestbot --help`) should not pay it, so the names below load their module on first use.
_HOME = {
    "rank_profile": "engine",
    "score_subscribers": "engine",
    "load_model": "model",
    "iter_subscriber_chunks": "stream",
    "topk_rows": "topk",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)


__all__ = sorted(_HOME)
