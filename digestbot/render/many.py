"""Many readers' digests at once, in a pool of forked processes when there are cores."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from datetime import datetime

from ..config import Config
from ..errors import RenderError
from ..scoring.picks import Pick
from ..store import Paper, Subscriber
from .digest import RenderedDigest, render_digest
from .templates import get_template

TEMPLATES = (
    "digest.html.j2",
    "digest.txt.j2",
    "_card.html.j2",
    "_card.txt.j2",
    "_divider.html.j2",
    "empty.html.j2",
    "empty.txt.j2",
)
Job = tuple[Subscriber, Sequence[tuple[Paper, Pick]], str]  # reader, entries, period
_SHARED: tuple[Sequence[Job], Config, datetime] | None = None  # what forked workers read


def _render_job(job: Job, config: Config, now: datetime) -> RenderedDigest | None | Exception:
    subscriber, entries, period = job
    try:
        return render_digest(subscriber, entries, period=period, config=config, now=now)
    except Exception as exc:  # one reader's broken digest must not stop the others
        return exc


# what a worker sends back for a digest: plain values, which unpickle several times faster
# than the dataclass (subject, message id, recipient, paper ids, message bytes); the
# headers are in the message
_Packed = tuple[str, str, str, list[str], bytes]


def _render_span(span: tuple[int, int]) -> list[_Packed | None | Exception]:
    assert _SHARED is not None, "render_many's workers read the jobs inherited by fork"
    jobs, config, now = _SHARED
    out: list[_Packed | None | Exception] = []
    for job in jobs[span[0] : span[1]]:
        result = _render_job(job, config, now)
        if isinstance(result, RenderedDigest):
            # what the queue needs travels back; the two bodies are inside the message
            out.append(
                (
                    result.subject,
                    result.message_id,
                    result.recipient,
                    result.paper_ids,
                    result.as_bytes(),
                )
            )
        elif isinstance(result, Exception):
            out.append(RenderError(f"{type(result).__name__}: {result}"))
        else:
            out.append(result)
    return out


def _unpack(packed: _Packed | None | Exception) -> RenderedDigest | None | Exception:
    if not isinstance(packed, tuple):
        return packed
    subject, message_id, recipient, paper_ids, data = packed
    return RenderedDigest(subject, message_id, recipient, [], paper_ids, "", "", data)


def render_many(
    jobs: Sequence[Job],
    *,
    config: Config,
    now: datetime,
    processes: int = 1,
    chunk: int = 50,
) -> list[RenderedDigest | None | Exception]:
    """Render many readers' digests: for each job, what :func:`render_digest` returns, or
    the exception it raised (one broken digest does not stop the others).

    With ``processes`` > 1 (and a platform that forks), a process pool renders spans of
    ``chunk`` jobs; the workers inherit the jobs when forked, so nothing is pickled on the
    way in. Digests coming back from a worker carry their finished message (``as_bytes()``),
    subject, message id, recipient and paper ids; ``html``, ``text`` and ``headers`` are
    left empty, as they are inside the message. Small spans keep the two workers' last
    spans finishing close together.
    """
    global _SHARED
    if processes <= 1 or len(jobs) <= chunk:
        return [_render_job(job, config, now) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    try:
        context = multiprocessing.get_context("fork")
    except ValueError:  # no fork (Windows): one process
        return [_render_job(job, config, now) for job in jobs]
    spans = [(i, min(i + chunk, len(jobs))) for i in range(0, len(jobs), chunk)]
    for name in TEMPLATES:  # compiled (and CSS inlined) once, before the workers fork
        get_template(name)
    _SHARED = (jobs, config, now)
    # the workers' garbage collector would walk every object they inherit (the jobs, the
    # ORM's state), copying the pages it touches: frozen, it leaves them alone
    gc.freeze()
    try:
        with ProcessPoolExecutor(processes, mp_context=context) as pool:
            return [_unpack(r) for part in pool.map(_render_span, spans) for r in part]
    finally:
        gc.unfreeze()
        _SHARED = None


__all__ = ["render_many"]
