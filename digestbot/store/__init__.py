"""The store: papers, subscribers and the outbox, in SQLite or PostgreSQL."""

from .db import RunLock, Store, normalise_url, open_store, run_lock, upgrade
from .models import (
    Base,
    Digest,
    DigestItem,
    Dump,
    Feedback,
    Meta,
    Paper,
    PaperEmbedding,
    Sighting,
    Subscriber,
    UsedToken,
)

__all__ = [
    "Base",
    "Digest",
    "DigestItem",
    "Dump",
    "Feedback",
    "Meta",
    "Paper",
    "PaperEmbedding",
    "RunLock",
    "run_lock",
    "Sighting",
    "Store",
    "Subscriber",
    "UsedToken",
    "normalise_url",
    "open_store",
    "upgrade",
]
