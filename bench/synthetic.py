"""Synthetic papers shared by the render and send benchmarks: titles and abstracts of the
length real ones have, so message sizes and rendering costs are realistic."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

from digestbot.store import Paper

WORDS = (
    "sparse autoencoders diffusion transformer retrieval agents reasoning multimodal "
    "alignment scaling laws tokenizer vision language robotics benchmark quantization "
    "distillation attention memory long context speculative decoding reinforcement"
).split()


def synthetic_papers(n: int, rng: random.Random, *, first_id: int = 0) -> list[Paper]:
    """``n`` unsaved papers with ids 2611.NNNNN from ``first_id`` on."""
    papers = []
    for i in range(first_id, first_id + n):
        title = " ".join(rng.choices(WORDS, k=rng.randint(6, 12))).capitalize()
        abstract = ". ".join(
            " ".join(rng.choices(WORDS, k=rng.randint(12, 25))).capitalize() for _ in range(6)
        )
        papers.append(
            Paper(
                id=f"2611.{i:05d}",
                arxiv_id=f"2611.{i:05d}",
                title_key=f"bench {i}",
                title=title,
                abstract=abstract + ".",
                authors=[f"Author {j}" for j in range(rng.randint(1, 12))],
                organization=rng.choice([None, "Meta AI", "Google DeepMind", "Tsinghua"]),
                published_on=date(2026, 11, 21),
                listed_on=date(2026, 11, 22),
                upvotes=rng.randint(0, 300),
                comments=rng.randint(0, 20),
                links=[],
                first_seen_at=datetime(2026, 11, 22, tzinfo=UTC),
                updated_at=datetime(2026, 11, 22, tzinfo=UTC),
            )
        )
    return papers
