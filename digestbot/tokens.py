"""Signed tokens for links in emails and on pages (itsdangerous).

A token signs a purpose and a value such as a subscriber's random ``pref_token``; it never
carries the address. Purposes are separate salts, so an unsubscribe token cannot be used
as a confirmation token.
"""

from __future__ import annotations

from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from . import clock
from .errors import ConfigError, ValidationError

PURPOSES = ("confirm", "unsubscribe", "preferences", "feedback", "csrf", "digest")


class TokenError(ValidationError):
    """A token is forged, for another purpose, or expired."""


class ClockSigner(TimestampSigner):
    """Stamps and checks ages by digestbot's clock, so ``--now`` and tests move link expiry
    with everything else (``get_timestamp`` is itsdangerous' documented hook for this)."""

    def get_timestamp(self) -> int:
        return int(clock.timestamp())


class Tokens:
    def __init__(self, secret: str) -> None:
        if not secret or len(secret) < 16:
            raise ConfigError(
                "the signing secret is missing or shorter than 16 characters",
                field="web.secret_key",
                hint="Set DIGESTBOT_SECRET_KEY, e.g. to the output of "
                '`python -c "import secrets; print(secrets.token_urlsafe(32))"`.',
            )
        self._secret = secret

    def _serializer(self, purpose: str) -> URLSafeTimedSerializer:
        if purpose not in PURPOSES:
            raise ValueError(f"unknown token purpose {purpose!r}")
        return URLSafeTimedSerializer(self._secret, salt=f"digestbot.{purpose}", signer=ClockSigner)

    def dumps(self, purpose: str, value: Any) -> str:
        return self._serializer(purpose).dumps(value)

    def loads(self, purpose: str, token: str, *, max_age: int | None = None) -> Any:
        try:
            return self._serializer(purpose).loads(token, max_age=max_age)
        except SignatureExpired:
            hint = (
                "Rate papers from a recent digest instead."
                if purpose == "feedback"
                else "Ask for a new one from the subscribe page."
            )
            raise TokenError("this link has expired", hint=hint) from None
        except BadSignature:
            raise TokenError(
                "this link is not valid", hint="Use the link exactly as it came in the email."
            ) from None
