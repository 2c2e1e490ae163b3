"""A dump's lines, split off its text a segment at a time.

Splitting a 170 MB page into lines at once costs a quarter of a second and holds all the lines
before the first paper is parsed; a segment at a time, only a segment's lines are held.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

from .reading import free_of_controls

SEGMENT = 1 << 20  # characters, cut at the next line break


def _segments(text: str, size: int) -> Iterator[tuple[str, bool]]:
    """``text`` in pieces whose lines, in order, are ``text.split("\\n")``; True with the
    last piece."""
    pos, end = 0, len(text)
    while True:
        cut = text.find("\n", pos + size) if pos + size < end else -1
        if cut < 0:
            yield text[pos:], True
            return
        yield text[pos:cut], False
        pos = cut + 1


class LineFeed:
    """``lines`` holds the current segment's lines (and any appended to look ahead); line
    ``i`` of the text is ``lines[i - base]``. ``plain`` says that no line loaded so far holds
    a control character (it only ever turns False), when asked to check."""

    def __init__(self, text: str, *, check_controls: bool, size: int | None = None) -> None:
        self._segments: Iterator[tuple[str, bool]] | None = _segments(text, size or SEGMENT)
        self.final = False  # the last segment is loaded
        self._check = check_controls
        self.plain = check_controls
        self.lines: list[str] = []
        self.base = 0
        self.append()

    def _next(self) -> list[str] | None:
        if self._segments is None:
            return None
        found = next(self._segments, None)
        if found is None:
            self._segments = None
            return None
        segment, self.final = found
        if self._check and self.plain:
            self.plain = free_of_controls(segment.encode("utf-8", "surrogatepass"))
        return segment.split("\n")

    def append(self) -> bool:
        """The next segment's lines after the current ones; False at the end of the text."""
        lines = self._next()
        if lines is None:
            return False
        self.lines.extend(lines)
        return True

    def advance(self) -> bool:
        """The next segment's lines instead of the current ones, which are done with."""
        lines = self._next()
        if lines is None:
            return False
        self.base += len(self.lines)
        self.lines = lines
        return True

    def numbered(self, start: int) -> Iterator[tuple[int, str]]:
        """(index, line) from line ``start`` (not before ``base``) to the end of the text,
        whatever is appended meanwhile to look ahead."""
        i = start
        while True:
            lines, base = self.lines, self.base
            end = len(lines)
            yield from enumerate(islice(lines, i - base, end), i)
            i = base + end
            if len(lines) > end:  # segments appended to look ahead: drop the lines done
                del lines[:end]
                self.base += end
            elif not self.advance():
                return

    def close(self) -> None:
        self._segments = None
        self.lines = []
