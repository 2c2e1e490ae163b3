"""A mail server we connect to (the SMTP relay, the bounce mailbox): where it is, how we log
in, and the TLS context."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any, Self

from ..errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """The keys [smtp] and [mailbox] both declare; each adds its own in a subclass."""

    host: str
    port: int
    security: str
    username: str
    password: str
    cafile: str
    timeout: float

    @classmethod
    def from_section(cls, c: Any, **own: Any) -> Self:
        """The settings of a config section (``config.smtp``), with the subclass's ``own``."""
        return cls(
            host=c.host,
            port=c.port,
            security=c.security,
            username=c.username,
            password=c.password,
            cafile=str(c.cafile or ""),
            timeout=c.timeout,
            **own,
        )


def client_context(
    section: str, security: str, cafile: str, *, verify: bool = True
) -> ssl.SSLContext | None:
    """None for ``security = "none"``; else the system's CAs, or ``cafile``'s. A CA file that
    cannot be read is a settings error naming ``<section>.cafile``."""
    if security == "none":
        return None
    try:
        ctx = ssl.create_default_context(cafile=cafile or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load CA file {cafile}: {exc}",
            field=f"{section}.cafile",
            hint=f"Point {section}.cafile at a PEM bundle holding your server's CA.",
        ) from None
    if not verify:  # smtp.validate_certs = false, on a trusted network only
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
