"""What operators graph: the last run's summary, kept in the store and as Prometheus metrics.

Each run records its summary in the store's ``meta`` table (``last_run``), which the web
front's ``/metrics`` reads; with ``log.metrics_textfile`` set it is also written in the
Prometheus text format for node-exporter's textfile collector, so a one-shot run from a
timer or cron is graphed without any process to scrape.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from .. import clock
from ..config import Config
from ..store import Meta, Store
from .report import RunReport

log = logging.getLogger("digestbot.run")
LAST_RUN = "last_run"


def record_run(store: Store, config: Config, report: RunReport) -> None:
    """Keep the run's summary (the report without its per-digest outcomes, stamped with when
    the run ended) for /metrics and the textfile; a failure here is logged, never the run's
    failure."""
    summary = report.as_dict()
    del summary["outcomes"]
    summary["finished_at"] = clock.timestamp()
    summary["seconds"] = round(sum(report.timings.values()), 3)
    try:
        with store.session() as session:
            session.merge(Meta(key=LAST_RUN, value=json.dumps(summary)))  # insert or update
    except SQLAlchemyError as exc:
        log.warning("could not record the run's summary: %s", exc)
    path = config["log.metrics_textfile"]
    if path:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(run_families(summary)))
        try:
            # written to a temporary file and renamed: node-exporter never reads half a file
            write_to_textfile(str(config.path("log.metrics_textfile")), registry)
        except OSError as exc:
            log.warning("could not write log.metrics_textfile %s: %s", path, exc)


def last_run(store: Store) -> dict[str, Any] | None:
    with store.session() as session:
        value = session.scalar(select(Meta.value).where(Meta.key == LAST_RUN))
    try:
        data = json.loads(value) if value else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def run_families(summary: dict[str, Any] | None) -> list[Metric]:
    """The last run as gauges: when it ended, how long it took, its result, its counts."""
    finished = GaugeMetricFamily(
        "digestbot_last_run_timestamp_seconds", "When the last digestbot run ended (Unix time)."
    )
    took = GaugeMetricFamily(
        "digestbot_last_run_duration_seconds", "How long the last digestbot run's stages took."
    )
    result = GaugeMetricFamily(
        "digestbot_last_run_result",
        "1 for the last run's result: ok, partial (something failed or waits), nothing.",
        labels=["result"],
    )
    counts = GaugeMetricFamily(
        "digestbot_last_run_items",
        "What the last run did, per stage: files, papers, digests, messages.",
        labels=["stage", "outcome"],
    )
    errors = GaugeMetricFamily(
        "digestbot_last_run_errors", "Stages of the last run that could not work at all."
    )
    if summary is None:
        return [finished, took, result, counts, errors]
    finished.add_metric([], float(summary.get("finished_at", 0)))
    took.add_metric([], float(summary.get("seconds", 0)))
    for name in ("ok", "partial", "nothing"):
        result.add_metric([name], 1.0 if summary.get("status") == name else 0.0)
    for stage in ("ingest", "digests", "send"):
        for outcome, value in (summary.get(stage) or {}).items():
            counts.add_metric([stage, outcome], float(value))
    counts.add_metric(["feeds", "written"], float(summary.get("feeds", 0)))
    errors.add_metric([], float(len(summary.get("errors") or [])))
    return [finished, took, result, counts, errors]


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        yield from self._families
