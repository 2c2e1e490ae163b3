"""Parsing a big dump in a child process while this one writes what is parsed so far.

Parsing and writing each cost about as much CPU as the other, and the sqlite3 driver holds
the GIL while it binds rows, so a thread would not overlap them: a forked child parses the
file from start to end (so line numbers and every check stay exactly as in one pass) and
sends papers in batches through a pipe, as plain tuples, cheap to pickle. It also says when
a paper repeats an earlier one: the repeat would change what was already written, so the
writer then starts over with the whole dump, repeats merged (:func:`parse.merge_repeats`).
"""

from __future__ import annotations

import logging
import multiprocessing
import traceback
from collections.abc import Iterator
from datetime import date
from multiprocessing.connection import Connection
from operator import attrgetter
from pathlib import Path
from typing import Any

from ..errors import IngestError
from .model import ParsedDump, ParsedPaper
from .parse import merge_repeats, parse_raw
from .reading import decode_dump

log = logging.getLogger(__name__)
BATCH = 4096  # papers per message at most: a few MB (the first ones are smaller)
_FIELDS = attrgetter(*ParsedPaper.__dataclass_fields__)


def can_fork() -> bool:
    # a daemonic process (a worker of a pool) may not start children
    return (
        "fork" in multiprocessing.get_all_start_methods()
        and not multiprocessing.current_process().daemon
    )


class _Sender:
    """The child's side: batches of papers as tuples, with a flag for repeats."""

    def __init__(self, out: Connection) -> None:
        self.out = out
        self.keys: set[str] = set()
        self.arxiv: set[str] = set()

    def papers(self, fmt: str, listed_on: date, papers: list[ParsedPaper]) -> None:
        keys, arxiv = self.keys, self.arxiv
        before = len(keys) + len(arxiv)
        with_arxiv = 0
        for p in papers:
            keys.add(p.key)
            if p.arxiv_id:
                arxiv.add(p.arxiv_id)
                with_arxiv += 1
        # every key and arXiv id new: the batch repeats no paper, its own or earlier ones
        repeats = len(keys) + len(arxiv) - before != len(papers) + with_arxiv
        self.out.send(("papers", fmt, listed_on, list(map(_FIELDS, papers)), repeats))


def _child(
    out: Connection,
    path: Path,
    holder: list[bytes],
    mtime: float,
    listing_date: date | None,
    batch: int,
) -> None:
    try:
        raw = decode_dump(path, holder.pop(), mtime, "")  # the parent hashes the bytes
        sender = _Sender(out)
        parsed = parse_raw(raw, listing_date=listing_date, on_papers=sender.papers, batch=batch)
        sender.papers(parsed.format, parsed.listed_on, parsed.papers)
        out.send(("end", parsed.entries, parsed.warnings))
    except IngestError as exc:
        out.send(("error", exc))
    except BaseException:
        out.send(("crash", traceback.format_exc()))
    finally:
        out.close()


class Repeats(Exception):
    """The dump lists a paper twice: it must be written whole, repeats merged."""


class ParseStream:
    """The parent's side: batches of :class:`ParsedPaper` as the child sends them."""

    def __init__(
        self,
        path: Path,
        data: bytes,
        mtime: float,
        listing_date: date | None,
        batch: int | None = None,
    ) -> None:
        self.path = path
        self.content_hash = ""  # the caller's to set, while the child parses
        context = multiprocessing.get_context("fork")
        self._in, out = context.Pipe(duplex=False)
        holder = [data]
        self._process = context.Process(
            target=_child,
            args=(out, path, holder, mtime, listing_date, batch or BATCH),
            name="digestbot-parse",
            daemon=True,
        )
        self._process.start()
        out.close()
        holder.clear()  # the child has its copy; here the caller's reference is the last
        self.format: str | None = None
        self.listed_on: date | None = None
        self.received: list[ParsedPaper] = []  # every paper so far, in file order
        self.entries = 0
        self.warnings: list[str] = []
        self.repeats = False
        self.ended = False

    def _next(self) -> list[ParsedPaper] | None:
        """The next batch, None at the end; raises the child's IngestError."""
        if self.ended:
            return None
        try:
            message: tuple[Any, ...] = self._in.recv()
        except EOFError:
            # killed (out of memory, a signal): this dump fails, nothing of it is kept
            raise IngestError(
                "the process parsing this dump stopped before it finished",
                file=self.path,
                hint="Check the system log for a killed process (e.g. out of memory), "
                "then ingest the file again.",
            ) from None
        kind = message[0]
        if kind == "papers":
            _, self.format, self.listed_on, rows, repeats = message
            papers = [ParsedPaper(*row) for row in rows]
            self.received.extend(papers)
            self.repeats = repeats
            return papers
        self.ended = True
        if kind == "end":
            _, self.entries, self.warnings = message
            return None
        if kind == "error":
            raise message[1]
        log.error("parsing %s failed:\n%s", self.path, message[1])
        raise IngestError(
            "the parser failed on this dump (a bug in digestbot; the log has the traceback)",
            file=self.path,
            hint="Report it with the file if you can; the other dumps go on.",
        )

    def first(self) -> list[ParsedPaper]:
        """The first batch, which sets :attr:`format` and :attr:`listed_on`."""
        papers = self._next()
        assert papers is not None  # the child sends a batch, maybe empty, before the end
        if self.repeats:
            raise Repeats
        return papers

    def batches(self) -> Iterator[list[ParsedPaper]]:
        """The following batches; raises :class:`Repeats` before a batch with a repeat."""
        while (papers := self._next()) is not None:
            if self.repeats:
                raise Repeats
            yield papers

    def whole(self) -> ParsedDump:
        """The whole dump, repeats merged, as :func:`parse.parse_raw` gives it."""
        while self._next() is not None:
            pass
        assert self.format is not None and self.listed_on is not None
        return ParsedDump(
            path=self.path,
            format=self.format,
            listed_on=self.listed_on,
            papers=merge_repeats(self.received),
            content_hash=self.content_hash,
            entries=self.entries,
            warnings=self.warnings,
        )

    def close(self) -> None:
        """Stop the child if it still runs (the dump failed to store) and reap it."""
        if not self.ended and self._process.is_alive():
            self._process.terminate()
        self._process.join()
        self._process.close()
        self._in.close()
