"""``/metrics``: the store's state and the last run, in the Prometheus text format.

Computed from the store at each scrape (two GROUP BY counts and one row), so several web
workers, the daemon and one-shot runs all agree; nothing is counted in this process.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..deliver.outbox import STATES
from ..pipeline.metrics import last_run, run_families
from ..store import Digest, Paper, Store, Subscriber
from ..store.subscribers import STATUSES
from .pages import site_of


class StoreCollector(Collector):
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        with self.store.session() as session:
            statuses = dict(
                session.execute(
                    select(Subscriber.status, func.count()).group_by(Subscriber.status)
                ).all()
            )
            states = dict(
                session.execute(select(Digest.state, func.count()).group_by(Digest.state)).all()
            )
            papers = session.scalar(select(func.count()).select_from(Paper)) or 0
        subscribers = GaugeMetricFamily(
            "digestbot_subscribers", "Subscribers by status.", labels=["status"]
        )
        for status in sorted(set(STATUSES) | set(statuses)):
            subscribers.add_metric([status], float(statuses.get(status, 0)))
        yield subscribers
        digests = GaugeMetricFamily(
            "digestbot_digests", "Digests in the outbox by state.", labels=["state"]
        )
        for state in sorted(set(STATES) | set(states)):
            digests.add_metric([state], float(states.get(state, 0)))
        yield digests
        yield GaugeMetricFamily("digestbot_papers", "Papers in the store.", value=float(papers))
        yield from run_families(last_run(self.store))


def render(store: Store) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return generate_latest(registry)


async def metrics(request: Request) -> Response:
    site = site_of(request)
    if not site.config["web.metrics"]:
        raise HTTPException(404)
    body = await run_in_threadpool(render, site.store)
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
