"""A reader's digest in the browser: every paper in full, from the signed link in the
email (the message itself holds what fits under Gmail's clipping limit)."""

from __future__ import annotations

from datetime import UTC

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ..errors import NotFoundError
from ..render import render_digest
from ..render.feeds import stored_pick
from ..store import Digest, DigestItem, Paper, Subscriber
from .pages import site_of
from .site import Site, link_fields

# The page is the email's own HTML: inline styles, no script, nothing fetched.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
GONE = "This digest is no longer kept. Your next one will come by email as usual."


def _render(site: Site, pref_token: str, period: str) -> str:
    with site.store.session() as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.pref_token == pref_token))
        if sub is None:
            raise NotFoundError("this link points to a subscription that no longer exists")
        digest = s.scalar(
            select(Digest).where(Digest.subscriber_id == sub.id, Digest.period == period)
        )
        if digest is None or digest.state == "failed":
            raise NotFoundError(GONE)
        rows = s.execute(
            select(DigestItem, Paper)
            .join(Paper, Paper.id == DigestItem.paper_id)
            .where(DigestItem.digest_id == digest.id)
            .order_by(DigestItem.rank)
        )
        entries = [(p, stored_pick(p.id, item.score, item.why)) for item, p in rows]
        created = digest.created_at
        when = created.replace(tzinfo=UTC) if created.tzinfo is None else created
        rendered = render_digest(
            sub, entries, period=period, config=site.config, now=when, whole=True
        )
        if rendered is None:
            raise NotFoundError(GONE)
        return rendered.html


async def digest_page(request: Request) -> Response:
    site = site_of(request)
    pref_token, period = link_fields(
        site.tokens.loads("digest", request.path_params["token"]), "s", "p"
    )
    html = await run_in_threadpool(_render, site, pref_token, period)
    return HTMLResponse(html, headers={"Cache-Control": "no-store", "Content-Security-Policy": CSP})
