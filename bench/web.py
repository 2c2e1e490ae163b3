"""Web front throughput, in process (httpx ASGITransport, no network): the subscribe page,
a feed answered with 304, a full feed, and subscribe POSTs that create pending readers.

Run: .venv/bin/python bench/web.py [requests]. Prints requests per second and the core
count; figures on a shared machine are noisy.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx

from digestbot.config import default_config
from digestbot.render import write_feeds
from digestbot.store import Paper
from digestbot.web import create_app


def _papers(app: object, n: int) -> None:
    store = app.state.site.store  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    with store.session() as s:
        for i in range(n):
            s.add(
                Paper(
                    id=f"2603.{i:05d}",
                    arxiv_id=f"2603.{i:05d}",
                    title_key=f"paper {i}",
                    title=f"Paper {i} on diffusion models",
                    abstract="We study things. " * 40,
                    authors=["A. Author", "B. Author"],
                    listed_on=date(2026, 3, 3),
                    upvotes=i % 97,
                    first_seen_at=now - timedelta(minutes=i),
                    links=[],
                )
            )


async def _rate(client: httpx.AsyncClient, n: int, make: object) -> float:
    started = time.perf_counter()
    for i in range(n):
        response = await make(client, i)  # type: ignore[operator]
        assert response.status_code in (200, 304), response.status_code
    return n / (time.perf_counter() - started)


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = default_config(
            store__db=str(Path(tmp) / "bench.db"),
            web__secret_key="bench-secret-key-0123456789",
            web__subscribe_limit=10**9,
            digest__feeds_dir=str(Path(tmp) / "feeds"),
            delivery__transport="file",
            delivery__outdir=str(Path(tmp) / "eml"),
        )
        app = create_app(config)
        _papers(app, 500)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            home = await client.get("/")
            token = re.search(r'name="csrf_token" value="([^"]+)"', home.text).group(1)  # type: ignore[union-attr]
            etag = (await client.get("/feeds/new.rss")).headers["etag"]

            async def get_home(c: httpx.AsyncClient, i: int) -> httpx.Response:
                return await c.get("/")

            async def feed_304(c: httpx.AsyncClient, i: int) -> httpx.Response:
                return await c.get("/feeds/new.rss", headers={"If-None-Match": etag})

            async def feed_full(c: httpx.AsyncClient, i: int) -> httpx.Response:
                return await c.get("/feeds/new.rss")

            async def subscribe(c: httpx.AsyncClient, i: int) -> httpx.Response:
                form = {
                    "csrf_token": token,
                    "email": f"reader{i}@example.org",
                    "keywords": "diffusion models, speech",
                    "frequency": "daily",
                    "send_hour": "8",
                    "timezone": "UTC",
                }
                return await c.post("/subscribe", data=form)

            print(f"cores: {os.cpu_count()}  requests per case: {n}  papers: 500")
            for name, make in (
                ("GET / (form + preview)", get_home),
                ("GET /feeds/new.rss -> 304 (built)", feed_304),
                ("GET /feeds/new.rss (built from store)", feed_full),
                ("POST /subscribe (+ confirmation .eml)", subscribe),
            ):
                print(f"{name:42s} {await _rate(client, n, make):8.1f} req/s")
            # what production serves: the files the digest run writes
            write_feeds(app.state.site.store, config)
            etag = (await client.get("/feeds/new.rss")).headers["etag"]
            for name, make in (
                ("GET /feeds/new.rss -> 304 (file)", feed_304),
                ("GET /feeds/new.rss (file)", feed_full),
            ):
                print(f"{name:42s} {await _rate(client, n, make):8.1f} req/s")
        app.state.site.store.dispose()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
