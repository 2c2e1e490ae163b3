"""VERP: each digest goes out with its own envelope sender, so a bounce names the digest.

A delivery status notification that arrives days later goes to the message's envelope sender
(its Return-Path). With ``bounces+<digest id>-<tag>@domain`` that address alone says which
digest, and so which reader, bounced, whatever the DSN's body says (or fails to say). The
address never carries the reader's address. The tag is the start of the digest's
Message-ID, itself a hash of the reader's random token: stored with the digest, so a bounce
is checked against the store, and not guessable from the outside, so a forged DSN to
``bounces+1234-...`` cannot mark a stranger bounced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..config import Config

TAG_LENGTH = 12
_VERP = re.compile(
    r"^(?P<local>[^+@\s]+)\+(?P<id>\d+)-(?P<tag>[0-9a-z]+)@(?P<domain>[^@\s]+)$", re.I
)


def tag_for(message_id: str) -> str:
    """The part of a digest's Message-ID that its VERP address carries."""
    return re.sub(r"[^0-9a-z]", "", message_id.lower())[:TAG_LENGTH]


@dataclass(frozen=True)
class Verp:
    """Envelope senders for one configuration."""

    base: str  # the plain envelope sender: delivery.envelope_from or digest.from_address
    local: str
    domain: str
    enabled: bool

    @classmethod
    def from_config(cls, config: Config) -> Verp:
        explicit = str(config["delivery.envelope_from"])
        base = explicit or str(config["digest.from_address"])
        local, _, domain = base.rpartition("@")
        # an explicit envelope sender is the bounce mailbox: keep its name; the From
        # address is a person's or a team's, so bounces get a name of their own
        local = local if explicit and local else "bounces"
        domain = str(config["delivery.verp_domain"]) or domain or "localhost"
        return cls(base, local, domain, bool(config["delivery.verp"]))

    def address(self, digest_id: int, message_id: str) -> str:
        """The envelope sender for one digest (the plain one when VERP is off)."""
        if not self.enabled:
            return self.base
        return f"{self.local}+{digest_id}-{tag_for(message_id)}@{self.domain}"


def parse(address: str) -> tuple[int, str] | None:
    """(digest id, tag) from a VERP address, or None when it is not one of ours."""
    match = _VERP.match(address.strip().strip("<>"))
    if match is None or len(match["tag"]) != TAG_LENGTH:
        return None
    return int(match["id"]), match["tag"].lower()


__all__ = ["TAG_LENGTH", "Verp", "parse", "tag_for"]
