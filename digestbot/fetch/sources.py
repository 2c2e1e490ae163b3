"""Where listings come from: each source is a class registered under its name.

A source turns the days asked for into requests (a URL and the dump name its response is
saved as) and checks a response before it is written: a body that is not a listing never
reaches the inbox. Adding a source is one module with one ``@register("name")`` class and
its name in the ``fetch.sources`` setting's choices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import ClassVar, TypeVar

from ..config import Config

S = TypeVar("S", bound="Source")


@dataclass(frozen=True)
class Request:
    url: str
    file_name: str  # the dump's name in the inbox, e.g. hf-2026-11-22.json
    label: str  # how the summary names it, e.g. "hf 2026-11-22"


class Source:
    """One kind of listing; subclasses set ``name`` and implement the two methods."""

    name: ClassVar[str]

    def __init__(self, config: Config) -> None:
        self.config = config

    def requests(self, days: list[date] | None, today: date) -> list[Request]:
        """The requests for ``days`` (None: the latest listing, dated ``today``)."""
        raise NotImplementedError

    def check(self, body: bytes) -> int:
        """The number of papers in a response; raises FetchError if it is not a listing."""
        raise NotImplementedError


SOURCES: dict[str, type[Source]] = {}


def register(name: str) -> Callable[[type[S]], type[S]]:
    def add(cls: type[S]) -> type[S]:
        cls.name = name
        SOURCES[name] = cls
        return cls

    return add
