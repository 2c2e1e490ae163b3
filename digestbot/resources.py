"""Where templates and seeds live: the source tree's top-level folders, or the copies
shipped inside the installed package."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_TOP = _PACKAGE.parent


def templates_dir() -> Path:
    top = _TOP / "templates"
    return top if top.is_dir() else _PACKAGE / "_templates"


def seeds_dir() -> Path:
    local = Path.cwd() / "seeds"
    if local.is_dir():
        return local
    top = _TOP / "seeds"
    return top if top.is_dir() else _PACKAGE / "_seeds"
