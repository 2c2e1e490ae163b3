"""Many readers' digests at once, in a pool of forked processes when there are cores.

What a worker sends back travels in two ways. The small values (subject, message id,
recipient, paper ids) go through the pool's pipe; the messages, 56 KiB each, are written
end to end into one file per span in a memory-backed spool folder (``/dev/shm``) and read
back by the parent straight into each message's bytes. Through the pipe, receiving them
cost the parent more system time than rendering them cost a worker. A full or missing
spool falls back to the pipe.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

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
    "_card_short.html.j2",
    "_card_short.txt.j2",
    "_divider.html.j2",
    "empty.html.j2",
    "empty.txt.j2",
)
Job = tuple[Subscriber, Sequence[tuple[Paper, Pick]], str]  # reader, entries, period
Result = RenderedDigest | None | Exception
# what forked workers read: the jobs, config, now, and the spool folder
_SHARED: tuple[Sequence[Job], Config, datetime, str] | None = None

# a digest as a worker sends it back: plain values, which unpickle several times faster
# than the dataclass (subject, message id, recipient, paper ids, and the message: its
# bytes, or its length in the span's spool file); the headers are in the message
_Packed = tuple[str, str, str, list[str], bytes | int]
# a span's results, and the spool file holding its messages ("" when they are inline)
Span = tuple[list[_Packed | None | Exception], str]
_IOV_MAX = 512  # buffers per writev call (Linux allows 1024)


def render_job(job: Job, config: Config, now: datetime) -> Result:
    """:func:`render_digest` for one job, or the exception it raised."""
    subscriber, entries, period = job
    try:
        return render_digest(subscriber, entries, period=period, config=config, now=now)
    except Exception as exc:  # one reader's broken digest must not stop the others
        return exc


def pack_span(results: Sequence[Result], folder: str, name: str) -> Span:
    """A worker's results for the parent, the messages written to ``folder/name``.

    Exceptions become :class:`RenderError` naming the original type: any exception
    pickles as that, whatever its constructor takes."""
    out: list[_Packed | None | Exception] = []
    messages: list[bytes] = []
    for result in results:
        if isinstance(result, RenderedDigest):
            data = result.as_bytes()
            messages.append(data)
            out.append(
                (result.subject, result.message_id, result.recipient, result.paper_ids, len(data))
            )
        elif isinstance(result, Exception):
            out.append(RenderError(f"{type(result).__name__}: {result}"))
        else:
            out.append(result)
    path = os.path.join(folder, name)
    try:
        with open(path, "wb", buffering=0) as file:
            _write_all(file.fileno(), messages)
    except OSError:
        Path(path).unlink(missing_ok=True)
        inline = iter(messages)
        return [(*o[:4], next(inline)) if isinstance(o, tuple) else o for o in out], ""
    return out, path


def unpack_span(span: Span) -> list[Result]:
    """The parent's side of :func:`pack_span`; the spool file is removed."""
    packed, path = span
    if not path:
        return [_digest(p, p[4]) if isinstance(p, tuple) else p for p in packed]
    try:
        # read straight into each message's bytes: one copy, and no fresh pages to fault
        # in (mapping the file, or reading it whole, cost a page fault per 4 KiB)
        with open(path, "rb", buffering=0) as file:
            return [
                _digest(p, _read(file, int(p[4]))) if isinstance(p, tuple) else p for p in packed
            ]
    finally:
        os.unlink(path)


@contextmanager
def spool() -> Iterator[str]:
    """A private folder for spans' messages, memory-backed where the system has one.

    Named after this process: a run killed outright leaves its folder behind (in memory,
    with /dev/shm), and the next spool removes the folders of processes that are gone."""
    shm = "/dev/shm"
    where = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()
    _remove_stale(Path(where))
    prefix = f"{SPOOL_PREFIX}{os.getpid()}-"
    with tempfile.TemporaryDirectory(prefix=prefix, dir=where) as folder:
        yield folder


SPOOL_PREFIX = "digestbot-render-"


def _remove_stale(where: Path) -> None:
    for folder in where.glob(f"{SPOOL_PREFIX}*-*"):
        pid = folder.name[len(SPOOL_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:  # its process is gone (a reused pid keeps it: harmless)
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # another user's process: not ours to judge
            continue


def _digest(packed: _Packed, data: bytes | int) -> RenderedDigest:
    subject, message_id, recipient, paper_ids, _ = packed
    assert isinstance(data, bytes)
    return RenderedDigest(subject, message_id, recipient, [], paper_ids, "", "", data)


def _read(file: Any, size: int) -> bytes:
    data = file.read(size)
    if len(data) != size:  # a regular file gives all it holds: this one was cut short
        raise RenderError(f"a render worker's spool file ended early ({len(data)} < {size} B)")
    return data


def _write_all(fd: int, parts: list[bytes]) -> None:
    """Write ``parts`` end to end without joining them (a join is another big buffer)."""
    views = [memoryview(p) for p in parts]
    while views:
        written = os.writev(fd, views[:_IOV_MAX])
        while views and written >= len(views[0]):
            written -= len(views.pop(0))
        if written:
            views[0] = views[0][written:]


def _render_span(span: tuple[int, int]) -> Span:
    assert _SHARED is not None, "render_many's workers read the jobs inherited by fork"
    jobs, config, now, folder = _SHARED
    results = [render_job(job, config, now) for job in jobs[span[0] : span[1]]]
    return pack_span(results, folder, f"{span[0]}.msgs")


def prepare_templates() -> None:
    """Compile the digest templates (and inline their CSS) before workers fork, once."""
    for name in TEMPLATES:
        get_template(name)


def render_many(
    jobs: Sequence[Job],
    *,
    config: Config,
    now: datetime,
    processes: int = 1,
    chunk: int = 50,
) -> list[Result]:
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
        return [render_job(job, config, now) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    try:
        context = multiprocessing.get_context("fork")
    except ValueError:  # no fork (Windows): one process
        return [render_job(job, config, now) for job in jobs]
    spans = [(i, min(i + chunk, len(jobs))) for i in range(0, len(jobs), chunk)]
    prepare_templates()
    # the workers' garbage collector would walk every object they inherit (the jobs, the
    # ORM's state), copying the pages it touches: frozen, it leaves them alone
    gc.freeze()
    try:
        with spool() as folder, ProcessPoolExecutor(processes, mp_context=context) as pool:
            _SHARED = (jobs, config, now, folder)
            return [r for span in pool.map(_render_span, spans) for r in unpack_span(span)]
    finally:
        gc.unfreeze()
        _SHARED = None


__all__ = [
    "Job",
    "Result",
    "Span",
    "pack_span",
    "render_job",
    "render_many",
    "spool",
    "unpack_span",
]
