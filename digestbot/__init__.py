"""digestbot: get trending papers in your email inbox."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # looked up when asked for: importlib.metadata costs every command 20 ms at start-up
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("digestbot")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0"
