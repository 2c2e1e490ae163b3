"""digestbot: get trending papers in your email inbox."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("digestbot")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
