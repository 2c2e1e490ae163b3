"""The confirmation email: composed from templates/email/confirm.*.j2, sent by deliver.

It is sent after the response has gone out, so the subscribe page takes the same time
whether a new address got a confirmation link or a known one got a reminder.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from ..config import Config
from ..deliver import send_now
from ..deliver.transports import SendFailure, make_transport
from ..errors import DigestbotError
from ..render import build_message
from ..render.links import confirm_url, preferences_url, unsubscribe_url
from ..render.templates import get_template
from ..tokens import Tokens
from .site import Site

log = logging.getLogger("digestbot.web")


@dataclass(frozen=True)
class Notice:
    """What to tell an address after a subscribe request; no store objects cross threads."""

    # "confirm": a link to confirm; "already": a reminder with the links; "links": the
    # reader's new links after they asked for them (the old ones stopped working)
    kind: str
    email: str
    pref_token: str
    # the pending request's nonce, carried by the confirmation link ("confirm" only)
    confirm_nonce: str | None = None


def compose(config: Config, tokens: Tokens, notice: Notice) -> bytes:
    context = {
        "kind": notice.kind,
        "email": notice.email,
        "confirm_hours": config["web.confirm_hours"],
        "site_url": config["digest.site_url"].rstrip("/"),
        "from_name": config["digest.from_name"],
        "preferences_url": preferences_url(config, notice),
        "unsubscribe_url": unsubscribe_url(config, notice),
        "confirm_url": "",
    }
    if notice.kind == "confirm":
        payload = {"s": notice.pref_token, "n": notice.confirm_nonce}
        context["confirm_url"] = confirm_url(config, tokens.dumps("confirm", payload))
        subject = f"Confirm your {config['digest.from_name']} subscription"
    elif notice.kind == "links":
        subject = f"Your new {config['digest.from_name']} links"
    else:
        subject = f"You are already subscribed to {config['digest.from_name']}"
    context["subject"] = subject
    # the render stage's environment: same base templates, CSS inlined for mail clients
    html = get_template("confirm.html.j2").render(context)
    text = get_template("confirm.txt.j2").render(context)
    return build_message(config, to=notice.email, subject=subject, text=text, html=html)


# How long the relay's answer to "do you offer SMTPUTF8?" is trusted before asking again
UTF8_CHECK_SECONDS = 600.0
UTF8_LOCAL_PART = (
    "This address has characters other than plain ASCII letters before the @, and our mail "
    "server cannot deliver to such addresses, so the confirmation email would never reach "
    "you. Please use another address."
)


async def address_problem(site: Site, email: str) -> str | None:
    """Why the confirmation email could not reach ``email``, said on the form rather than
    "check your inbox" for a mail that will never come; None when it can be sent.

    Only a non-ASCII local part depends on the relay (SMTPUTF8); its answer is kept for
    ``UTF8_CHECK_SECONDS``. A relay that cannot be asked is not an answer: the request
    goes on, and the sending reports the failure as for any address."""
    if email.rpartition("@")[0].isascii():
        return None
    known = site.utf8_mail
    if known is None or time.monotonic() - known[0] > UTF8_CHECK_SECONDS:
        try:
            takes = await make_transport(site.config).takes_utf8_local_parts()
        except (DigestbotError, SendFailure) as error:
            log.warning("cannot ask the mail server about SMTPUTF8: %s", error)
            return None
        site.utf8_mail = known = (time.monotonic(), takes)
    return None if known[1] else UTF8_LOCAL_PART


async def deliver_notice(config: Config, tokens: Tokens, notice: Notice) -> None:
    """Compose and send now; DeliveryError when the message was not accepted."""
    message = await run_in_threadpool(compose, config, tokens, notice)
    await run_in_threadpool(send_now, config, message, recipient=notice.email)


async def send_notice(config: Config, tokens: Tokens, notice: Notice) -> None:
    """Background task: compose and send; failures are logged, the reader can ask again."""
    try:
        await deliver_notice(config, tokens, notice)
    except DigestbotError as error:
        log.error("confirmation email not sent: %s", error)
    except Exception:
        log.exception("confirmation email not sent")
