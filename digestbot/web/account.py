"""A reader's own pages, reached by signed links from their emails: unsubscribe,
preferences, feedback on a paper."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from ..errors import NotFoundError
from ..render.feeds import PUBLIC, remove_feed_files
from ..render.links import DIRECTIONS, feed_urls, paper_url
from ..store import Paper, Subscriber
from ..store.subscribers import (
    disliked_ids,
    liked_ids,
    new_token,
    rotate_tokens,
    set_feedback,
    update_subscriber,
)
from .forms import PREFERENCE_FIELDS, FormResult, check_form, read_form
from .mail import Notice, deliver_notice
from .pages import busy_or, form_context, site_of
from .security import check_csrf
from .site import INVALID_LINK, Site, link_fields

T = TypeVar("T")
GONE = "This link points to a subscription that no longer exists."


def _value(site: Site, purpose: str, token: str) -> Any:
    # preferences and unsubscribe links stay valid (a reader's tokens can be rotated);
    # more/less-like-this links expire after web.feedback_days
    days = site.config["web.feedback_days"] if purpose == "feedback" else 0
    return site.tokens.loads(purpose, token, max_age=days * 86400 if days else None)


def _pref_token(site: Site, purpose: str, token: str) -> str:
    value = _value(site, purpose, token)
    if not isinstance(value, str):
        raise HTTPException(400, INVALID_LINK)
    return value


async def _on_subscriber(site: Site, pref_token: str, work: Callable[[Any, Subscriber], T]) -> T:
    """``work(session, subscriber)`` in a worker thread, for the reader holding
    ``pref_token``, in one session; NotFoundError when there is none."""

    def run() -> T:
        with site.store.session() as s:
            sub = s.scalar(select(Subscriber).where(Subscriber.pref_token == pref_token))
            if sub is None:
                raise NotFoundError(GONE)
            return work(s, sub)

    return await run_in_threadpool(run)


def _snapshot(session: Any, site: Site, sub: Subscriber) -> dict[str, Any]:
    """Plain values for the templates, read inside the session."""
    return {
        "email": sub.email,
        "status": sub.status,
        "keywords": ", ".join(sub.keywords or []),
        "frequency": sub.frequency,
        "weekday": sub.weekday,
        "send_hour": sub.send_hour,
        "timezone": sub.timezone,
        "formats": sub.formats,
        "max_items": sub.max_items,
        "feeds": feed_urls(site.config, sub.feed_token),
        "liked": len(liked_ids(session, sub)),
        "disliked": len(disliked_ids(session, sub)),
        "unsubscribe_token": site.tokens.dumps("unsubscribe", sub.pref_token),
    }


# --- unsubscribe ----------------------------------------------------------------------------


def _unsubscribe(s: Any, sub: Subscriber) -> str:
    if sub.status != "unsubscribed":
        update_subscriber(s, sub, status="unsubscribed")
    return sub.email


async def unsubscribe(request: Request) -> Response:
    site = site_of(request)
    token = request.path_params["token"]
    pref_token = _pref_token(site, "unsubscribe", token)
    if request.method == "POST":
        form = await read_form(request)
        # RFC 8058: mail providers POST "List-Unsubscribe=One-Click" with no cookie and no
        # page; the signed token in the URL is the authorisation.
        if form.get("List-Unsubscribe") == "One-Click":
            await busy_or(_on_subscriber(site, pref_token, _unsubscribe))
            return PlainTextResponse("Unsubscribed.\n", headers={"Cache-Control": "no-store"})
        check_csrf(request, form, site.tokens)
        email = await busy_or(_on_subscriber(site, pref_token, _unsubscribe))
        status = "unsubscribed"
        done = True
    else:
        email, status = await _on_subscriber(
            site, pref_token, lambda _, sub: (sub.email, sub.status)
        )
        done = status == "unsubscribed"
    return site.page(
        request,
        "unsubscribe.html",
        {
            "email": email,
            "done": done,
            "status": status,
            # no preferences link: unsubscribe links reach mail providers' scanners, and
            # must not open the address's settings and feeds to them
        },
        private=True,
    )


# --- preferences ----------------------------------------------------------------------------


def _resubscribe(s: Any, sub: Subscriber) -> None:
    # the signed link proves the reader owns the address: no second opt-in needed
    if sub.status != "active":
        update_subscriber(s, sub, status="active")


async def preferences(request: Request) -> Response:
    site = site_of(request)
    token = request.path_params["token"]
    pref_token = _pref_token(site, "preferences", token)
    result = FormResult({})
    status = 200
    if request.method == "POST":
        form = await read_form(request)
        check_csrf(request, form, site.tokens)
        if form.get("action") == "resubscribe":
            await _on_subscriber(site, pref_token, _resubscribe)
            return RedirectResponse(f"/preferences/{token}?resubscribed=1", status_code=303)
        if form.get("action") == "new_links":
            return await _new_links(request, site, pref_token)
        result = check_form(form, PREFERENCE_FIELDS)
        if result.ok:
            await _on_subscriber(
                site, pref_token, lambda s, sub: update_subscriber(s, sub, **result.values)
            )
            return RedirectResponse(f"/preferences/{token}?saved=1", status_code=303)
        status = 422
    current = await _on_subscriber(site, pref_token, lambda s, sub: _snapshot(s, site, sub))
    defaults = {k: current[k] for k in PREFERENCE_FIELDS}
    notice = next(
        (n for n in ("welcome", "saved", "resubscribed") if request.query_params.get(n)), None
    )
    context = {
        "sub": current,
        "token": token,
        "notice": None if status != 200 else notice,
        "public_feeds": feed_urls(site.config, PUBLIC),
        **form_context(result, defaults),
    }
    return site.page(request, "preferences.html", context, status=status, private=True)


async def _new_links(request: Request, site: Site, pref_token: str) -> Response:
    """Mail fresh links to the address, then make them the only ones that work.

    Whoever holds a link (a forwarded digest) can press this, but only the mailbox gets the
    new links. The mail goes first: if it is not accepted nothing changes, so the reader
    is never left without working links.
    """
    email = await _on_subscriber(site, pref_token, lambda _, sub: sub.email)
    fresh = new_token()
    await deliver_notice(site.config, site.tokens, Notice("links", email, fresh))
    # the tokens are replaced only if pref_token is still current; gives the old feed token
    old_feed = await _on_subscriber(
        site, pref_token, lambda s, sub: rotate_tokens(s, sub, pref_token=fresh)[1]
    )
    await run_in_threadpool(remove_feed_files, site.config, old_feed)
    return site.page(request, "new_links.html", {"email": email}, private=True)


# --- feedback -------------------------------------------------------------------------------


def _feedback(s: Any, sub: Subscriber, paper_id: str, direction: str, save: bool) -> dict[str, Any]:
    paper = s.get(Paper, paper_id)
    if paper is None:
        raise NotFoundError("this paper is no longer in the archive")
    if save:
        set_feedback(s, sub, paper_id, 1 if direction == "more" else -1)
    return {"title": paper.title, "url": paper_url(paper)}


async def feedback(request: Request) -> Response:
    site = site_of(request)
    token = request.path_params["token"]
    pref_token, paper_id, direction = link_fields(_value(site, "feedback", token), "s", "p", "d")
    if direction not in DIRECTIONS:
        raise HTTPException(400, INVALID_LINK)
    save = request.method == "POST"
    if save:
        form = await read_form(request)
        check_csrf(request, form, site.tokens)
    paper = await _on_subscriber(
        site, pref_token, lambda s, sub: _feedback(s, sub, paper_id, direction, save)
    )
    return site.page(
        request,
        "feedback.html",
        {
            "paper": paper,
            "direction": direction,
            "done": save,
            "token": token,
            "preferences_token": site.tokens.dumps("preferences", pref_token),
        },
        private=True,
    )
