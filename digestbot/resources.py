"""Where the templates, static files and sample dumps live: inside the package, found with
``importlib.resources`` whether it runs from a checkout or an installed wheel.

The checkout's top-level ``templates/`` and ``seeds/`` are links to these same folders, so
there is one copy of each file and people find them where they look first.
"""

from __future__ import annotations

import atexit
from contextlib import ExitStack
from functools import cache
from importlib.resources import as_file, files
from pathlib import Path

_opened = ExitStack()
atexit.register(_opened.close)


@cache
def package_dir(name: str) -> Path:
    """A folder shipped in the package, as a real path (extracted if the package is zipped)."""
    return _opened.enter_context(as_file(files("digestbot").joinpath(name)))


def templates_dir() -> Path:
    return package_dir("templates")


def seeds_dir() -> Path:
    """``./seeds`` when the current folder has one (a checkout), else the shipped samples."""
    local = Path.cwd() / "seeds"
    return local if local.is_dir() else package_dir("seeds")
