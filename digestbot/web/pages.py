"""The subscribe page, double opt-in and the health check.

Nothing changes state on GET: mail systems' link scanners open every link in a message,
so confirming (like unsubscribing and feedback) takes a button press, a POST.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import zoneinfo
from collections.abc import Awaitable
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from ..errors import NotFoundError, StoreError
from ..periods import WEEKDAYS
from ..render.links import paper_url
from ..store import Paper, Store, Subscriber, UsedToken
from ..store.subscribers import (
    add_subscriber,
    email_key,
    find_subscriber,
    update_subscriber,
)
from .forms import LABELS, SUBSCRIBE_FIELDS, FormResult, check_form, read_form
from .mail import Notice, address_problem, send_notice
from .ratelimit import client_key, mailbox_key
from .security import check_csrf, client_address
from .site import INVALID_LINK, VERSION, Site, link_fields

T = TypeVar("T")
RETRY_AFTER = 60  # seconds a reader is asked to wait when the store is busy

log = logging.getLogger("digestbot.web")

PREVIEW_SIZE = 5


def site_of(request: Request) -> Site:
    site: Site = request.app.state.site
    return site


@cache
def time_zones() -> list[str]:
    return sorted(z for z in zoneinfo.available_timezones() if "/" in z and "Etc" not in z) + [
        "UTC"
    ]


def form_context(result: FormResult, defaults: dict[str, Any]) -> dict[str, Any]:
    """What the form partial needs: values to show, errors, and the choices."""
    shown = {k: str(v) for k, v in defaults.items()}
    shown.update({k: v for k, v in result.raw.items() if k not in result.errors or v})
    return {
        "values": shown,
        "errors": result.errors,
        "labels": LABELS,
        "zones": time_zones(),
        "weekdays": list(enumerate(WEEKDAYS)),
        "hours": list(range(24)),
    }


SUBSCRIBE_DEFAULTS = {
    "email": "",
    "keywords": "",
    "frequency": "daily",
    "weekday": 0,
    "send_hour": 8,
    "timezone": "UTC",
}


def _preview(store: Store) -> list[dict[str, Any]]:
    """The latest listing's top papers, by upvotes: what a first digest looks like."""
    with store.session() as s:
        latest = s.scalar(select(func.max(Paper.listed_on)))
        query = select(Paper)
        if latest is not None:
            query = query.where(Paper.listed_on == latest)
        query = query.order_by(
            Paper.upvotes.desc().nulls_last(), Paper.first_seen_at.desc(), Paper.id
        ).limit(PREVIEW_SIZE)
        return [
            {
                "title": p.title,
                "url": paper_url(p),
                "authors": _authors(p.authors or [], p.author_count),
                "organization": p.organization,
                "upvotes": p.upvotes,
                "listed_on": p.listed_on,
                "abstract": _snippet(p.abstract or ""),
            }
            for p in s.scalars(query)
        ]


def _authors(names: list[str], count: int | None) -> str:
    total = max(len(names), count or 0)
    if not names:
        return ""
    shown = ", ".join(names[:3])
    return shown + (f" and {total - 3} more" if total > 3 else "")


def _snippet(abstract: str, limit: int = 220) -> str:
    words = " ".join(abstract.split())
    if len(words) <= limit:
        return words
    return words[:limit].rsplit(" ", 1)[0] + "…"


async def home(request: Request) -> Response:
    return await _subscribe_page(request, site_of(request), FormResult({}), status=200)


async def _subscribe_page(
    request: Request, site: Site, result: FormResult, *, status: int
) -> Response:
    preview = await run_in_threadpool(_preview, site.store)
    context = {"preview": preview, **form_context(result, SUBSCRIBE_DEFAULTS)}
    return site.page(request, "subscribe.html", context, status=status)


def _rate_limit(site: Site, key: str) -> None:
    wait = site.limiter.hit(key)
    if wait:
        minutes = max(1, round(wait / 60))
        raise HTTPException(
            429,
            f"Too many subscribe requests. Please try again in about {minutes} minute"
            f"{'s' if minutes != 1 else ''}.",
            headers={"Retry-After": str(int(wait))},
        )


async def subscribe(request: Request) -> Response:
    site = site_of(request)
    form = await read_form(request)
    check_csrf(request, form, site.tokens)
    _rate_limit(site, "client:" + client_key(client_address(request, site.trusted)))
    result = check_form(form, SUBSCRIBE_FIELDS)
    if not result.ok:
        return await _subscribe_page(request, site, result, status=422)
    _rate_limit(site, "address:" + email_key(result.values["email"]))
    _rate_limit(site, "mailbox:" + mailbox_key(result.values["email"]))
    problem = await address_problem(site, result.values["email"])
    if problem:
        result.errors["email"] = problem
        return await _subscribe_page(request, site, result, status=422)
    # Recorded before the answer, so "check your inbox" is never said for a request that
    # was lost; the same page either way, and the email goes after the response: neither
    # the wording nor the timing says whether the address was here.
    notice = await busy_or(run_in_threadpool(_subscribe, site.store, dict(result.values)))
    return site.page(
        request,
        "check_inbox.html",
        {"email": result.values["email"], "confirm_hours": site.config["web.confirm_hours"]},
        background=BackgroundTask(_notify, site, notice),
    )


async def busy_or(work: Awaitable[T]) -> T:
    """The work's result, or 503 with Retry-After when the store could not take the write
    (SQLite's lock held by an import, PostgreSQL gone): the reader is told to try again,
    never that it was done."""
    try:
        return await work
    except (OperationalError, StoreError) as exc:
        log.warning("store busy, answered 503: %s", str(exc).splitlines()[0])
        raise HTTPException(
            503,
            "We could not save that just now: the service is busy. Nothing was changed; "
            "please try again in a minute.",
            headers={"Retry-After": str(RETRY_AFTER)},
        ) from None


async def _notify(site: Site, notice: Notice | None) -> None:
    """Background task: mail the address (or not, if it bounced)."""
    if notice is not None:
        await send_notice(site.config, site.tokens, notice)


def _subscribe(store: Store, values: dict[str, Any]) -> Notice | None:
    prefs = {k: v for k, v in values.items() if k != "email"}
    for attempt in range(2):
        try:
            with store.session() as s:
                sub = find_subscriber(s, values["email"])
                if sub is None:
                    # a new row: nobody else's settings to protect
                    sub = add_subscriber(s, email=values["email"], status="pending", **prefs)
                    kind = "confirm"
                elif sub.status == "active":
                    # a stranger must not be able to change an active reader's settings
                    kind = "already"
                elif sub.status == "bounced":
                    # mail to it bounced: the form never revives it, and sends nothing
                    return None
                else:
                    # kept aside until the owner confirms: a stranger's choices never
                    # replace the stored ones on their own
                    update_subscriber(s, sub, status="pending")
                    sub.pending_prefs = prefs
                    kind = "confirm"
                nonce = None
                if kind == "confirm":
                    # a new request: links from every earlier one stop working
                    nonce = sub.confirm_nonce = secrets.token_urlsafe(16)
                return Notice(kind, sub.email, sub.pref_token, nonce)
        except IntegrityError:
            # the same address submitted twice at once: the second sees the first's row
            if attempt:
                raise
    raise AssertionError("unreachable")


# --- confirmation ---------------------------------------------------------------------------


def _spent_key(pref_token: str, nonce: str) -> str:
    # the decoded payload, not the link's text: several strings verify as one token
    return hashlib.sha256(f"confirm\0{pref_token}\0{nonce}".encode()).hexdigest()


def _confirm(store: Store, pref_token: str, nonce: str, *, spend: bool = True) -> str:
    """The link's state, as for the GET page: already, spent or ready; with ``spend`` a
    ready link is spent and the reader activated ("confirmed")."""
    with store.session() as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.pref_token == pref_token))
        if sub is None:
            raise NotFoundError("this subscription no longer exists")
        if sub.status == "active":
            return "already"
        current = sub.confirm_nonce
        if (
            sub.status != "pending"
            or not current
            or not hmac.compare_digest(current, nonce)
            or s.get(UsedToken, _spent_key(pref_token, nonce)) is not None
        ):
            return "spent"
        if not spend:
            return "ready"
        s.add(UsedToken(token_hash=_spent_key(pref_token, nonce)))
        # flush first: if another request spent the token a moment ago, this one fails
        s.flush()
        update_subscriber(s, sub, status="active", **(sub.pending_prefs or {}))
        sub.confirm_nonce = None
        sub.pending_prefs = None
        return "confirmed"


def _confirm_value(site: Site, token: str) -> tuple[str, str]:
    value = site.tokens.loads("confirm", token, max_age=site.config["web.confirm_hours"] * 3600)
    pref_token, nonce = link_fields(value, "s", "n")
    if not nonce:
        raise HTTPException(400, INVALID_LINK)
    return pref_token, nonce


async def confirm(request: Request) -> Response:
    site = site_of(request)
    token = request.path_params["token"]
    if request.method == "POST":
        form = await read_form(request)
        check_csrf(request, form, site.tokens)
        pref_token, nonce = _confirm_value(site, token)
        try:
            state = await run_in_threadpool(_confirm, site.store, pref_token, nonce)
        except IntegrityError:
            state = "already"
        if state == "confirmed":
            path = "/preferences/" + site.tokens.dumps("preferences", pref_token)
            return RedirectResponse(path + "?welcome=1", status_code=303)
    else:
        pref_token, nonce = _confirm_value(site, token)
        state = await run_in_threadpool(_confirm, site.store, pref_token, nonce, spend=False)
    if state == "spent":
        raise HTTPException(
            410,
            "This confirmation link has already been used, was replaced by a newer one, or "
            "the subscription was cancelled. Subscribe again to get a new link.",
        )
    return site.page(request, "confirm.html", {"state": state, "token": token}, private=True)


# --- health ---------------------------------------------------------------------------------


def _db_ok(store: Store) -> None:
    with store.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


async def healthz(request: Request) -> Response:
    site = site_of(request)
    try:
        await run_in_threadpool(_db_ok, site.store)
        body = {"status": "ok", "database": "ok", "version": VERSION}
        status = 200
    except Exception as exc:  # any database failure means "not ready"
        body = {"status": "error", "database": type(exc).__name__, "version": VERSION}
        status = 503
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})
