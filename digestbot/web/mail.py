"""The confirmation email: composed from templates/email/confirm.*.j2, sent by deliver.

It is sent after the response has gone out, so the subscribe page takes the same time
whether a new address got a confirmation link or a known one got a reminder.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from ..config import Config
from ..deliver import send_now
from ..errors import DigestbotError
from ..render import build_message
from ..render.links import confirm_url, preferences_url, unsubscribe_url
from ..render.templates import get_template
from ..tokens import Tokens

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


class _Sub:
    """The two attributes the link builders read from a subscriber."""

    def __init__(self, notice: Notice) -> None:
        self.pref_token = notice.pref_token
        self.feed_token = ""  # not in these emails
        self.email = notice.email


def compose(config: Config, tokens: Tokens, notice: Notice) -> bytes:
    sub = _Sub(notice)
    context = {
        "kind": notice.kind,
        "email": notice.email,
        "confirm_hours": config["web.confirm_hours"],
        "site_url": config["digest.site_url"].rstrip("/"),
        "from_name": config["digest.from_name"],
        "preferences_url": preferences_url(config, sub),
        "unsubscribe_url": unsubscribe_url(config, sub),
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


async def deliver_notice(config: Config, tokens: Tokens, notice: Notice) -> None:
    """Compose and send now; DeliveryError when the message was not accepted."""
    message = await run_in_threadpool(compose, config, tokens, notice)
    if inspect.iscoroutinefunction(send_now):
        await send_now(config, message, recipient=notice.email)
    else:
        await run_in_threadpool(send_now, config, message, recipient=notice.email)


async def send_notice(config: Config, tokens: Tokens, notice: Notice) -> None:
    """Background task: compose and send; failures are logged, the reader can ask again."""
    try:
        await deliver_notice(config, tokens, notice)
    except DigestbotError as error:
        log.error("confirmation email not sent: %s", error)
    except Exception:
        log.exception("confirmation email not sent")
