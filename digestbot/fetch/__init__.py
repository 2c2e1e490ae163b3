"""Fetching: paper listings from their sources (Hugging Face Daily Papers, arXiv) into the
inbox, where ``digestbot ingest`` reads them like any other dump.

Sources are registered by name (:data:`SOURCES`); :func:`fetch_sources` fetches the
configured ones for a day, a range of days, or the latest listing.
"""

from . import arxiv, hf  # noqa: F401  (each registers its source)
from .report import FetchReport, FetchResult
from .run import configured_sources, days_between, fetch_sources, user_agent
from .sources import SOURCES, Request, Source, register

__all__ = [
    "SOURCES",
    "FetchReport",
    "FetchResult",
    "Request",
    "Source",
    "configured_sources",
    "days_between",
    "fetch_sources",
    "register",
    "user_agent",
]
