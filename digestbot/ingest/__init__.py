"""Ingestion: Hugging Face papers pages (text, Markdown, HTML) and API JSON into the store.

Parsing (:func:`parse_file`; the formats in :data:`parse.FORMATS`) is pure;
:func:`ingest_paths` and :func:`ingest_inbox` write each dump in one transaction and go on
past bad ones, whatever fails, returning an :class:`IngestReport`.
"""

from .inbox import ingest_inbox
from .load import expand_paths, ingest_file, ingest_paths
from .model import ParsedDump, ParsedPaper, normalise_title, paper_id_for, title_key
from .parse import detect_format, parse_file
from .query import list_papers, store_counts
from .report import DumpResult, FailedDump, IngestReport

__all__ = [
    "DumpResult",
    "FailedDump",
    "IngestReport",
    "ParsedDump",
    "ParsedPaper",
    "detect_format",
    "expand_paths",
    "ingest_file",
    "ingest_inbox",
    "ingest_paths",
    "list_papers",
    "normalise_title",
    "paper_id_for",
    "parse_file",
    "store_counts",
    "title_key",
]
