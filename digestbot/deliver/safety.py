"""Refuse to mail the world with settings meant for one machine.

The defaults suit the demo and the tests (a Maildir, a sink on 127.0.0.1): links to
``http://127.0.0.1:8080``, ``From: digestbot@localhost``. Sent over SMTP to real readers they
make broken links and mail that receiving servers reject or file as spam, and a placeholder
secret lets anyone forge unsubscribe and preference links. So over SMTP each of them is an
error, all named in one message, unless ``smtp.allow_test_settings`` says this is a test.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from ..config import Config
from ..errors import ConfigError

# Words that mark a secret as copied from an example rather than generated. A generated
# secret (secrets.token_urlsafe(32)) meets one of these by chance about once in 10^6.
_PLACEHOLDER = re.compile(
    r"change.?me|placeholder|not.?for.?prod|example|dummy|your.?secret|secret.?key|"
    r"^test|xxxx|^(.)\1*$",
    re.IGNORECASE,
)


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1, localhost and names under .localhost (RFC 6761)."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[1] if "@" in address else ""


def problems(config: Config) -> list[str]:
    """What makes these settings unfit for mail to real readers, one line per setting."""
    found: list[str] = []
    site = str(config["digest.site_url"])
    host = urlsplit(site).hostname or ""
    if is_loopback_host(host):
        found.append(
            f"digest.site_url is {site!r}: a loopback address, so every link in the mail "
            "leads nowhere"
        )
    for name in ("digest.from_address", "delivery.envelope_from"):
        address = str(config[name])
        if address and (not _domain(address) or is_loopback_host(_domain(address))):
            found.append(f"{name} is {address!r}: no public domain, so servers refuse or junk it")
    secret = str(config["web.secret_key"])
    if not secret:
        found.append("web.secret_key is not set: the links in the mail cannot be signed")
    elif _PLACEHOLDER.search(secret) or len(secret) < 16:
        found.append(
            "web.secret_key looks like a placeholder or test value: anyone could forge "
            "unsubscribe and preference links"
        )
    return found


def check_smtp_settings(config: Config) -> None:
    """ConfigError naming every unsafe setting, when mail goes out over SMTP."""
    if config["delivery.transport"] != "smtp" or config["smtp.allow_test_settings"]:
        return
    found = problems(config)
    if not found:
        return
    fields = [line.split(" ", 1)[0] for line in found]
    raise ConfigError(
        "refusing to send over SMTP with settings meant for a test on one machine: "
        + "; ".join(found),
        field=", ".join(fields),
        hint="Set digest.site_url to the public https address of `digestbot serve`, "
        "digest.from_address (and delivery.envelope_from) to addresses at your domain, and "
        "DIGESTBOT_SECRET_KEY to the output of "
        '`python -c "import secrets; print(secrets.token_urlsafe(32))"`. '
        "For a test setup on one machine only: smtp.allow_test_settings = true.",
    )


__all__ = ["check_smtp_settings", "is_loopback_host", "problems"]
