"""The whole run, strung together from the stages: see :func:`run_once`."""

from .due import select_due
from .report import RunReport
from .run import ingest_once, run_lock, run_once, send_once

__all__ = ["RunReport", "ingest_once", "run_lock", "run_once", "select_due", "send_once"]
