"""The TLS context for a mail server we connect to (the SMTP relay, the bounce mailbox)."""

from __future__ import annotations

import ssl

from ..errors import ConfigError


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
