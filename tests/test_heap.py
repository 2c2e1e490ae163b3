"""The collector during the digest stage: frozen and young collections rarer while it
runs, as it was afterwards; cycles still freed; the digest workers the same."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from digestbot.pipeline import run_once
from digestbot.pipeline.heap import YOUNG, freeze_heap
from digestbot.store import Store, open_store

from .conftest import make_config
from .pipeline_helpers import add, fill_inbox
from .test_pipeline import NOON


@pytest.fixture
def clean_collector() -> Iterator[None]:
    """Nothing frozen and Python's thresholds before the test, whatever it leaves."""
    before = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_freeze_heap_then_thaw(clean_collector: None) -> None:
    before = gc.get_threshold()
    thaw = freeze_heap()
    try:
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG, *before[1:])
        # a cycle made after the freeze is freed by a collection: memory stays flat
        a, b = Node(), Node()
        a.other, b.other = b, a
        del a, b
        assert gc.collect() >= 2
    finally:
        thaw()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_the_digest_stage_runs_frozen_and_leaves_the_collector_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_collector: None
) -> None:
    """Also when the stage fails: a daemon runs again and again in one process."""
    from digestbot.pipeline import digests as pipeline_digests

    seen: list[tuple[int, tuple[int, int, int]]] = []

    def failing(*args: object, **kwargs: object) -> None:
        seen.append((gc.get_freeze_count(), gc.get_threshold()))
        raise RuntimeError("broken batch")

    monkeypatch.setattr(pipeline_digests, "digest_batch", failing)
    before = gc.get_threshold()
    db = str(tmp_path / "d.db")
    config = make_config(tmp_path, db)
    store = open_store(db)
    try:
        fill_inbox(config.path("ingest.inbox"))
        add(store, "mail@example.org", send_hour=0, keywords=["diffusion"])
        report = run_once(store, config, now=NOON, send=False)
    finally:
        store.dispose()
    assert any("broken batch" in e for e in report.errors)
    assert len(seen) == 1 and seen[0][0] > 0 and seen[0][1][0] == YOUNG
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before


def test_a_digest_worker_runs_frozen(store: Store, tmp_path: Path) -> None:
    from digestbot.pipeline.workers import DigestPool

    pool = DigestPool(store, make_config(tmp_path, store.url), 1)
    try:
        assert pool.executor.submit(gc.get_freeze_count).result(timeout=60) > 0
        assert pool.executor.submit(gc.get_threshold).result(timeout=60)[0] == YOUNG
    finally:
        pool.close()
