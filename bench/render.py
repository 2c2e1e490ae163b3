"""Rendering speed: 10,000 digests of 10 papers built into messages, and 10,000 feeds.

Targets on a 2-core machine: >= 2,500 messages/s and >= 3,000 feeds/s (one feed = one
reader's RSS and Atom pair). Prints wall-clock rates and CPU time per item (other jobs on
the same cores lower the former), in one process. Per-paper caches are cleared before each
timed run, so building them counts.

    .venv/bin/python bench/render.py [--digests N] [--feeds N]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

from synthetic import WORDS, synthetic_papers  # noqa: E402

from digestbot.config import default_config
from digestbot.render import (
    render_digest,
    subscriber_feeds,
)
from digestbot.render.digest import clear_caches
from digestbot.scoring.picks import Pick
from digestbot.store import Paper, Subscriber  # noqa: E402


def make_subscribers(n: int, rng: random.Random) -> list[Subscriber]:
    return [
        Subscriber(
            id=i,
            email=f"reader{i}@example.org",
            name="",
            keywords=rng.sample(WORDS, 3),
            frequency="daily",
            timezone=rng.choice(["UTC", "Europe/Berlin", "America/New_York"]),
            formats="both",
            pref_token=f"pref{i:020d}",
            feed_token=f"feed{i:020d}",
            status="active",
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
        for i in range(n)
    ]


def picks_for(sub: Subscriber, papers: list[Paper], rng: random.Random) -> list[tuple]:
    chosen = rng.sample(papers, 10)
    return [
        (p, Pick(p.id, round(1 - i * 0.07, 3), matched=tuple(sub.keywords[:2])))
        for i, p in enumerate(chosen)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--digests", type=int, default=10_000)
    parser.add_argument("--feeds", type=int, default=10_000)
    args = parser.parse_args()
    rng = random.Random(7)
    config = default_config(web__secret_key="bench-secret-key-0123456789")
    papers = synthetic_papers(1000, rng)
    subs = make_subscribers(max(args.digests, args.feeds), rng)
    work = [picks_for(s, papers, rng) for s in subs]
    now = datetime(2026, 11, 22, 7, tzinfo=UTC)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"cpu_count: {os.cpu_count()}; load average before: {load}")
    digest_target, feed_target = 2500, 3000

    # warm up (templates compiled, CSS inlined once per process), then start cold: the
    # per-paper views and cards are built during the timed run, as in a real one
    render_digest(subs[0], work[0], period="2026-11-22/daily", config=config, now=now)
    clear_caches()
    start, cpu = time.perf_counter(), time.process_time()
    size = 0
    for sub, entries in zip(subs[: args.digests], work, strict=False):
        rendered = render_digest(sub, entries, period="2026-11-22/daily", config=config, now=now)
        assert rendered is not None
        size += len(rendered.as_bytes())
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    single = args.digests / elapsed
    print(
        f"digests, 1 process: {args.digests} rendered and built in {elapsed:.2f}s = "
        f"{single:,.0f} messages/s ({cpu / args.digests * 1e3:.3f} ms CPU each, i.e. "
        f"{args.digests / cpu:,.0f}/s per busy core); mean size {size / args.digests / 1024:.1f}"
        f" KiB; target >= {digest_target:,}/s {'met' if single >= digest_target else 'NOT met'}"
    )

    sample = [
        render_digest(s, w, period="p", config=config, now=now)
        for s, w in zip(subs[:500], work[:500], strict=True)
    ]
    start = time.perf_counter()
    for r in sample:
        r._bytes = None
        r.as_bytes()
    direct = (time.perf_counter() - start) / len(sample)
    start = time.perf_counter()
    for r in sample[:200]:
        message_from_bytes(r.as_bytes(), policy=policy.default)
    parse = (time.perf_counter() - start) / 200
    print(
        f"message building only: {direct * 1e3:.3f} ms/msg "
        f"({len(sample[0].as_bytes())} B); parsing back {parse * 1e3:.2f} ms/msg"
    )

    feed_work = [
        [(p, k, now - timedelta(days=i // 10)) for i, (p, k) in enumerate(w)]
        for w in work[: args.feeds]
    ]
    subscriber_feeds(subs[0], feed_work[0], config=config)
    clear_caches()
    start, cpu = time.perf_counter(), time.process_time()
    feed_size = 0
    for sub, entries in zip(subs, feed_work, strict=False):
        rss, atom = subscriber_feeds(sub, entries, config=config)
        feed_size += len(rss) + len(atom)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    rate = args.feeds / elapsed
    print(
        f"feeds, 1 process: {args.feeds} readers' RSS+Atom pairs (10 entries) in "
        f"{elapsed:.2f}s = {rate:,.0f} feeds/s ({2 * rate:,.0f} files/s; "
        f"{cpu / args.feeds * 1e3:.3f} ms CPU each, i.e. {args.feeds / cpu:,.0f}/s per busy "
        f"core); target >= {feed_target:,}/s {'met' if rate >= feed_target else 'NOT met'}"
    )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average after: {load} (other jobs on the same cores lower the wall figures)")


if __name__ == "__main__":
    main()
