"""Scoring: which new papers each subscriber gets, and why.

Papers become TF-IDF vectors (title above abstract, word pairs kept as phrases); a
subscriber's profile is their keywords plus the centroid of papers they liked, minus a share
of those they disliked (Rocchio); all profiles of a chunk meet all candidate papers in one
sparse matrix product.
"""

from .engine import PENDING_STATES, Profiles, rank, rank_profile, score_subscribers
from .model import PaperModel, build_model, keyword_matrix, load_model
from .picks import Pick, SubscriberPicks
from .stream import SCORING_COLUMNS, iter_subscriber_chunks
from .topk import topk_rows

__all__ = [
    "PENDING_STATES",
    "SCORING_COLUMNS",
    "PaperModel",
    "Pick",
    "Profiles",
    "SubscriberPicks",
    "build_model",
    "iter_subscriber_chunks",
    "keyword_matrix",
    "load_model",
    "rank",
    "rank_profile",
    "score_subscribers",
    "topk_rows",
]
