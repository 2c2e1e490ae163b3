"""One root error class; every subclass carries where it happened and how to fix it.

The CLI catches :class:`DigestbotError` once and prints ``Error: <where>: <message>`` and
``Hint: <hint>``, then exits 1. Library code raises these and never prints.
"""

from __future__ import annotations

from pathlib import Path


class DigestbotError(Exception):
    """Base class for errors a user can act on."""

    default_hint: str | None = None

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        file: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field

    @property
    def where(self) -> str:
        parts: list[str] = []
        if self.file:
            parts.append(self.file if self.line is None else f"{self.file}:{self.line}")
        elif self.line is not None:
            parts.append(f"line {self.line}")
        if self.field:
            parts.append(self.field)
        return ": ".join(parts)

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class ConfigError(DigestbotError):
    """A setting is unknown, of the wrong type, or out of range."""


class StoreError(DigestbotError):
    """The database cannot be opened, migrated or written."""


class LockError(DigestbotError):
    """Another run holds the lock."""

    default_hint = "Wait for the other run to finish; if none is running, the lock is stale."


class IngestError(DigestbotError):
    """A dump could not be read or parsed."""


class ValidationError(DigestbotError):
    """A user-supplied value (address, time zone, keywords...) is not acceptable."""


class NotFoundError(DigestbotError):
    """A subscriber, paper or digest that was asked for does not exist."""


class ScoringError(DigestbotError):
    """Profiles or papers cannot be scored."""


class RenderError(DigestbotError):
    """A template is missing or a digest cannot be rendered."""


class DeliveryError(DigestbotError):
    """A message could not be handed to the transport."""


class FetchError(DigestbotError):
    """A source could not be fetched, or sent something that is not a listing."""
