"""The app factory: one Starlette app per configuration, so each test gets its own."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from ..config import Config, load_config
from ..deliver.safety import check_smtp_settings
from ..errors import DigestbotError, NotFoundError, ValidationError
from ..resources import templates_dir
from ..store import open_store
from ..tokens import TokenError, Tokens
from . import account, feeds, metrics, pages
from .digest import digest_page
from .pages import site_of
from .ratelimit import RateLimiter
from .security import BodyLimit, SecurityHeaders, parse_networks
from .site import Site, log, make_templates

BUSY_SECONDS = 5  # a write waits this long for SQLite's lock, then the reader gets 503

ROUTE_NOT_FOUND = "There is nothing at this address. Check the link, or start from the home page."


class _App(Starlette):
    """Starlette, with the security headers outside even the 500 handler."""

    https: bool = False

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack(), https=self.https)


def create_app(config: Config | None = None, **overrides: Any) -> Starlette:
    """Build the web front for ``config`` (default: the usual files and environment).

    ``overrides`` are ``section__key=value`` pairs applied on top, e.g.
    ``create_app(cfg, web__subscribe_limit=2)``.
    """
    config = config if config is not None else load_config()
    if overrides:
        config = config.replace(**overrides)
    tokens = Tokens(config["web.secret_key"])  # fails now, not at the first request
    check_smtp_settings(config)  # confirmation mails: fail now, not after a reader subscribed
    trusted = parse_networks(config["web.trusted_proxies"])
    site = Site(
        config=config,
        # never migrates (workers would race): `digestbot db upgrade` runs once before
        store=open_store(config["store.db"], create=False, busy_seconds=BUSY_SECONDS),
        tokens=tokens,
        trusted=trusted,
        limiter=RateLimiter(config["web.subscribe_limit"]),
        templates=make_templates(),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        site.store.dispose()

    token = "{token:str}"
    routes = [
        Route("/", pages.home, methods=["GET"]),
        Route("/subscribe", pages.subscribe, methods=["POST"]),
        Route(f"/confirm/{token}", pages.confirm, methods=["GET", "POST"]),
        Route(f"/unsubscribe/{token}", account.unsubscribe, methods=["GET", "POST"]),
        Route(f"/preferences/{token}", account.preferences, methods=["GET", "POST"]),
        Route(f"/feedback/{token}", account.feedback, methods=["GET", "POST"]),
        Route(f"/digest/{token}", digest_page, methods=["GET"]),
        Route("/feeds/{name:str}", feeds.feed, methods=["GET"]),
        Route("/healthz", pages.healthz, methods=["GET"]),
        Route("/metrics", metrics.metrics, methods=["GET"]),
        Mount("/static", StaticFiles(directory=templates_dir() / "web" / "static"), name="static"),
    ]
    handlers: dict[Any, Any] = {
        HTTPException: _http_error,
        TokenError: _token_error,
        NotFoundError: _not_found,
        ValidationError: _invalid,
        DigestbotError: _failed,
        Exception: _crashed,
    }
    app = _App(
        routes=routes,
        middleware=[Middleware(BodyLimit, limit=config["web.max_body_kb"] * 1024)],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.https = site.secure
    app.state.site = site
    return app


async def _http_error(request: Request, exc: HTTPException) -> Response:
    detail = exc.detail
    if exc.status_code == 404 and detail == "Not Found":
        detail = ROUTE_NOT_FOUND
    elif exc.status_code == 405 and detail == "Method Not Allowed":
        detail = "This page cannot be used that way."
    return site_of(request).error(
        request, exc.status_code, detail, headers=dict(exc.headers or {}) or None
    )


async def _token_error(request: Request, exc: TokenError) -> Response:
    expired = "expired" in exc.message
    detail = f"{exc.message[:1].upper()}{exc.message[1:]}. {exc.hint or ''}".strip()
    return site_of(request).error(request, 410 if expired else 400, detail)


async def _not_found(request: Request, exc: NotFoundError) -> Response:
    message = exc.message[:1].upper() + exc.message[1:]
    return site_of(request).error(request, 404, message.rstrip(".") + ".")


async def _invalid(request: Request, exc: ValidationError) -> Response:
    detail = exc.message + (f". {exc.hint}" if exc.hint else "")
    return site_of(request).error(request, 422, detail[:1].upper() + detail[1:])


async def _failed(request: Request, exc: Exception) -> Response:
    log.error("%s %s: %s", request.method, request.url.path, exc)
    return site_of(request).error(
        request, 503, "The service could not complete this request. Please try again later."
    )


async def _crashed(request: Request, exc: Exception) -> Response:
    # Starlette logs the traceback; the reader gets the same page as every other error
    return site_of(request).error(
        request, 500, "The service ran into a problem. Please try again in a little while."
    )
