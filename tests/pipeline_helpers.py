"""Helpers shared by the pipeline, schedule and demo tests."""

from __future__ import annotations

import mailbox
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from digestbot.store import Store
from digestbot.store.subscribers import add_subscriber

SEEDS = Path(__file__).resolve().parent.parent / "seeds"


def fill_inbox(inbox: Path, count: int | None = None) -> list[Path]:
    inbox.mkdir(parents=True, exist_ok=True)
    seeds = sorted(SEEDS.iterdir())[:count]
    for path in seeds:
        shutil.copy2(path, inbox / path.name)
    return seeds


def add(store: Store, email: str, **fields: Any) -> int:
    fields.setdefault("keywords", ["diffusion", "language model"])
    with store.session() as session:
        return add_subscriber(session, email=email, **fields).id


def maildir_recipients(folder: Path) -> Counter[str]:
    """How many messages each address got in a Maildir."""
    if not folder.exists():
        return Counter()
    box = mailbox.Maildir(folder, factory=None, create=False)
    return Counter(str(message["To"]).rsplit("<", 1)[-1].rstrip(">") for message in box)
