"""Mail that comes back: delivery status notifications and unsubscribe requests, read and
applied to the store.

A DSN (RFC 3464) is a ``multipart/report; report-type=delivery-status`` whose
``message/delivery-status`` part holds one block per recipient with ``Action``, ``Status``
and ``Final-Recipient``. It is applied only when it came to one of our VERP addresses (see
:mod:`.verp`) whose digest exists and whose tag matches: anyone can write a DSN naming any
address, but only the mail system that got the digest knows where to send it back.

An unsubscribe request is a mail to the ``mailto:`` of ``List-Unsubscribe``, whose subject
(``unsubscribe <signed token>``) the reader's mail program copied from that header. The
token is checked like the one-click link's. Nothing is sent back: a reply to a forged
request would be mail to a stranger.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses

from sqlalchemy import select

from .. import clock
from ..config import Config
from ..store import Digest, Store, Subscriber
from ..store.subscribers import update_subscriber
from ..tokens import TokenError, Tokens
from . import verp

_STATUS = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_UNSUBSCRIBE = re.compile(r"^\s*(?:re:\s*)?unsubscribe\s+(\S+)\s*$", re.I)


@dataclass
class Recipient:
    """One per-recipient block of a DSN."""

    action: str  # failed, delayed, delivered, relayed, expanded
    status: str  # 5.1.1
    final_recipient: str
    diagnostic: str = ""

    @property
    def hard(self) -> bool:
        """A permanent failure that says the address cannot take mail."""
        return self.action == "failed" and self.status.startswith("5.") and not self._ours

    @property
    def soft(self) -> bool:
        """A failure that may pass: temporary (4.x.x), or about the message, not the address."""
        return self.action == "failed" and (self.status.startswith("4.") or self._ours)

    @property
    def _ours(self) -> bool:
        # permanent, but about this message or our sending, not the reader's address: policy
        # and spam refusals (5.7.x), a message too big (5.2.3, 5.3.4) or in a form the
        # server refuses (5.6.x). They count like temporary ones: repeated, mail is not
        # getting through, but one of them does not say the address is gone.
        status = self.status
        return status.startswith(("5.7.", "5.6.")) or status in ("5.2.3", "5.3.4")


@dataclass
class Incoming:
    """What a mail is: ``bounce`` (a DSN), ``unsubscribe``, or ``unknown`` (and why)."""

    kind: str
    reason: str = ""
    recipients: list[Recipient] = field(default_factory=list)
    verp: tuple[int, str] | None = None  # (digest id, tag) from the address it came to
    token: str = ""  # the unsubscribe token


def _addresses(msg: Message, *names: str) -> list[str]:
    values = [str(v) for name in names for v in msg.get_all(name, [])]
    return [addr for _, addr in getaddresses(values) if addr]


def _verp_address(msg: Message) -> tuple[int, str] | None:
    # the mailbox's delivery agent records the envelope recipient in Delivered-To (or
    # X-Original-To); a DSN's To is the Return-Path it bounced to, which is the same
    for address in _addresses(msg, "Delivered-To", "X-Original-To", "Envelope-To", "To"):
        found = verp.parse(address)
        if found is not None:
            return found
    return None


def _dsn_blocks(report: Message) -> list[Message]:
    """The header blocks of a message/delivery-status part."""
    payload = report.get_payload()
    if isinstance(payload, list):
        # the stdlib parser turns each block into a Message of headers
        return [p for p in payload if isinstance(p, Message)]
    text = payload if isinstance(payload, str) else ""
    parser = BytesParser(policy=policy.default)
    blocks = re.split(r"\r?\n\s*\r?\n", text.strip())
    return [parser.parsebytes(b.encode("utf-8", "replace") + b"\n\n") for b in blocks if b]


def _field(block: Message, name: str) -> str:
    value = str(block.get(name, "") or "")
    # "rfc822; ada@example.org": the address type is not needed
    return value.split(";", 1)[1].strip() if ";" in value else value.strip()


def parse_dsn(msg: Message) -> list[Recipient] | None:
    """The recipient blocks of a DSN, or None when ``msg`` is not one."""
    if msg.get_content_type() != "multipart/report":
        return None
    if str(msg.get_param("report-type", "")).lower() != "delivery-status":
        return None
    for part in msg.walk():
        if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status"):
            out: list[Recipient] = []
            # the per-message block (Reporting-MTA, ...) has no Action: only recipients do
            for block in _dsn_blocks(part):
                action = _field(block, "Action").lower()
                status = _STATUS.match(_field(block, "Status"))
                if not action or status is None:
                    continue
                out.append(
                    Recipient(
                        action=action,
                        status=".".join(status.groups()),
                        final_recipient=_field(block, "Final-Recipient")
                        or _field(block, "Original-Recipient"),
                        diagnostic=_field(block, "Diagnostic-Code")[:300],
                    )
                )
            return out
    return []


def classify(data: bytes) -> Incoming:
    """What one raw mail is; never raises for bad mail (it is ``unknown``, with why)."""
    msg = BytesParser(policy=policy.default).parsebytes(data)
    recipients = parse_dsn(msg)
    if recipients is not None:
        found = _verp_address(msg)
        if not recipients:
            return Incoming("unknown", "a delivery report without a recipient status")
        if found is None:
            return Incoming("unknown", "a delivery report not sent to a VERP address", recipients)
        return Incoming("bounce", recipients=recipients, verp=found)
    subject = str(msg.get("Subject", "") or "")
    match = _UNSUBSCRIBE.match(subject)
    if match is not None:
        return Incoming("unsubscribe", token=match.group(1))
    if isinstance(msg, EmailMessage) and msg.get("Auto-Submitted", "no").lower() != "no":
        return Incoming("unknown", "an automatic reply that is not a delivery report")
    return Incoming("unknown", "neither a delivery report nor an unsubscribe request")


@dataclass
class Applied:
    """What applying one mail did: ``result`` is the folder it belongs in."""

    result: str  # processed | unknown
    action: str  # bounced, soft-bounce, delivered, unsubscribed, ignored
    detail: str = ""


def apply(store: Store, config: Config, incoming: Incoming) -> Applied:
    """Apply one classified mail to the store, in one transaction."""
    if incoming.kind == "bounce":
        return _apply_bounce(store, config, incoming)
    if incoming.kind == "unsubscribe":
        return _apply_unsubscribe(store, config, incoming.token)
    return Applied("unknown", "ignored", incoming.reason)


def _apply_bounce(store: Store, config: Config, incoming: Incoming) -> Applied:
    assert incoming.verp is not None
    digest_id, tag = incoming.verp
    limit = int(config["mailbox.soft_bounce_limit"])
    with store.session() as s:
        digest = s.get(Digest, digest_id)
        if digest is None or verp.tag_for(digest.message_id) != tag:
            return Applied("unknown", "ignored", f"no digest matches VERP id {digest_id}")
        sub = s.get(Subscriber, digest.subscriber_id, with_for_update=True)
        if sub is None:
            return Applied("unknown", "ignored", f"the reader of digest {digest_id} is gone")
        # the report is about our digest, and its recipient is who we sent it to; a block
        # about another address (a forward) does not count against this reader
        ours = [
            r
            for r in incoming.recipients
            if not r.final_recipient or r.final_recipient.lower() == digest.recipient.lower()
        ] or incoming.recipients
        hard = next((r for r in ours if r.hard), None)
        soft = next((r for r in ours if r.soft), None)
        who = f"reader {sub.id}"
        if (hard or soft) is not None and sub.status != "active":
            # unsubscribed (or bounced) since: nothing more goes there anyway, and a later
            # subscription from that address starts afresh
            return Applied("processed", "ignored", f"{who} is {sub.status}")
        if hard is not None:
            sub.status = "bounced"
            sub.bounced_reason = _reason(hard)
            sub.updated_at = clock.now()
            return Applied("processed", "bounced", f"{who}: {hard.status}")
        if soft is not None:
            sub.soft_bounces = (sub.soft_bounces or 0) + 1
            action = "soft-bounce"
            if sub.soft_bounces >= limit:
                sub.status = "bounced"
                sub.bounced_reason = f"{sub.soft_bounces} temporary bounces; last: {_reason(soft)}"
                action = "bounced"
            sub.updated_at = clock.now()
            return Applied(
                "processed", action, f"{who}: {soft.status} ({sub.soft_bounces} of {limit})"
            )
        actions = ", ".join(sorted({r.action for r in ours}))
        return Applied("processed", "delivered", f"{who}: {actions}")


def _reason(r: Recipient) -> str:
    text = f"{r.status} (delivery report)"
    return f"{text}: {r.diagnostic}" if r.diagnostic else text


def _apply_unsubscribe(store: Store, config: Config, token: str) -> Applied:
    try:
        pref_token = Tokens(str(config["web.secret_key"])).loads("unsubscribe", token)
    except TokenError as exc:
        return Applied("unknown", "ignored", f"unsubscribe request with a bad token: {exc}")
    with store.session() as s:
        sub = s.scalars(
            select(Subscriber).where(Subscriber.pref_token == str(pref_token))
        ).one_or_none()
        if sub is None:
            return Applied("unknown", "ignored", "unsubscribe request for no known reader")
        if sub.status != "unsubscribed":
            update_subscriber(s, sub, status="unsubscribed")
        return Applied("processed", "unsubscribed", f"reader {sub.id}")


__all__ = ["Applied", "Incoming", "Recipient", "apply", "classify", "parse_dsn"]
