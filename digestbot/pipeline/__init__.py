"""The whole run, strung together from the stages: see :func:`run_once`."""

from .due import Due, Selection, select_due
from .report import DigestOutcome, RunReport
from .run import (
    digest_stage,
    feeds_stage,
    ingest_once,
    ingest_stage,
    prepare_folders,
    run_lock,
    run_once,
    send_once,
    send_stage,
)

__all__ = [
    "DigestOutcome",
    "Due",
    "RunReport",
    "Selection",
    "digest_stage",
    "feeds_stage",
    "ingest_once",
    "ingest_stage",
    "prepare_folders",
    "run_lock",
    "run_once",
    "send_once",
    "select_due",
    "send_stage",
]
