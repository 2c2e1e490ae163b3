"""Templates rendered once and filled many times: per-paper cards and the digest document.

Rendering a template through Jinja for each reader costs more than the rest of their
digest. Most of what a template prints is the same for every reader (the card of a paper,
the document around the papers), so it is rendered once with a marker where each reader's
value goes, and split at the markers; filling the pieces with a reader's values, printed
as Jinja prints them (escaped in HTML unless Markup, ``str()`` in text), gives exactly what
rendering the template would. This is the only way digests are rendered; the tests read
the messages back with the stdlib parser and lxml, and hold them to golden files.

An HTML card also keeps its statics as they travel in the message: ASCII, with character
references (per character, so the pieces' encodings join to the whole's); the few reader
values with a non-ASCII character are encoded as they are filled in. The message's HTML is
then one ASCII string, which joins and encodes several times faster than a string holding
a single non-ASCII character (and the document has dozens).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from markupsafe import Markup, escape

from ..errors import RenderError

MARK = "\x00"  # never in a cleaned value (clean_text drops controls) nor in a template


@lru_cache(maxsize=256)
def slot(name: str) -> Markup:
    """The marker printed where the value ``name`` goes (Markup: printed as is)."""
    return Markup(f"{MARK}{name}{MARK}")


def html_ascii(value: str) -> str:
    """HTML as it travels in a message: ASCII, anything else as character references."""
    return value.encode("ascii", "xmlcharrefreplace").decode("ascii")


@dataclass(slots=True, frozen=True)
class Card:
    """A template rendered once: the text between the reader's values, and their names.
    ``statics`` has one more item than ``names``; ``encoded``, of HTML, the statics as
    they travel in the message (see :func:`html_ascii`)."""

    statics: tuple[str, ...]
    names: tuple[str, ...]
    encoded: tuple[str, ...] | None

    def fill(self, values: Sequence[str], out: list[str]) -> None:
        """Append the card with ``values`` (one per name, ready to print) to ``out``."""
        parts: list[Any] = [None] * (2 * len(self.names) + 1)
        parts[::2] = self.statics
        parts[1::2] = values
        out.extend(parts)

    def fill_encoded(self, values: Sequence[str], out: list[str]) -> None:
        """:meth:`fill` as the HTML travels in the message: ASCII, with character
        references (joined, the parts are one ASCII string, which encodes several times
        faster than a string holding a single non-ASCII character)."""
        assert self.encoded is not None
        parts: list[Any] = [None] * (2 * len(self.names) + 1)
        parts[::2] = self.encoded
        # a value with a non-ASCII character (curly quotes in a why line) would make the
        # whole joined document a wide string: encoded here, it stays ASCII
        parts[1::2] = [v if v.isascii() else html_ascii(v) for v in values]
        out.extend(parts)


def split(rendered: str, allowed: set[str] | frozenset[str], what: str, *, html: bool) -> Card:
    """A template's output rendered with markers, as a :class:`Card`."""
    parts = rendered.split(MARK)
    names = tuple(parts[1::2])
    if len(parts) % 2 == 0 or not set(names) <= allowed:
        raise RenderError(f"template {what} produced a stray marker")
    statics = tuple(parts[::2])
    encoded = tuple(map(html_ascii, statics)) if html else None
    return Card(statics, names, encoded)


_DOCUMENTS: dict[tuple[Any, ...], Card] = {}
_DOCUMENTS_MAX = 256


def document(
    template: Any, context: Mapping[str, Any], *, html: bool, block: str
) -> tuple[Card, list[Any]]:
    """The skeleton of ``template`` for this context's shape, rendered once per template
    and shape, and the context's values printed for it (``block`` as given).

    Only for templates that print their context values and test them for truth alone (the
    digest document): a value that is false (an empty feed link) is passed as it is and
    is part of the shape; every other value becomes a marker and is filled in.
    """
    falsy = tuple((k, v) for k, v in context.items() if not v)
    key = (template, tuple(context), falsy)
    skeleton = _DOCUMENTS.get(key)
    if skeleton is None:
        slots = {k: (slot(k) if v else v) for k, v in context.items()}
        skeleton = split(template.render(slots), frozenset(context), template.name, html=html)
        if len(_DOCUMENTS) >= _DOCUMENTS_MAX:
            _DOCUMENTS.clear()
        _DOCUMENTS[key] = skeleton
    show: Callable[[Any], str] = escape if html else str
    return skeleton, [
        context[name] if name == block else show(context[name]) for name in skeleton.names
    ]


def fill_document(template: Any, context: Mapping[str, Any], *, html: bool, block: str) -> str:
    """``template.render(context)``, from the skeleton of :func:`document`."""
    skeleton, values = document(template, context, html=html, block=block)
    out: list[str] = []
    skeleton.fill([str(v) for v in values], out)
    return "".join(out)


def clear() -> None:
    _DOCUMENTS.clear()
