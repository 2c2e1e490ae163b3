"""The web front: subscribe with double opt-in, one-click unsubscribe, preferences, feeds."""

from .app import create_app

__all__ = ["create_app"]
