"""What every request handler shares: configuration, store, tokens, templates, limits."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import jinja2
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.templating import Jinja2Templates

from .. import __version__ as VERSION
from ..config import Config
from ..resources import templates_dir
from ..store import Store
from ..tokens import Tokens
from .ratelimit import RateLimiter
from .security import Network, csrf_token, set_csrf_cookie

log = logging.getLogger("digestbot.web")


INVALID_LINK = "This link is not valid."


def link_fields(value: Any, *keys: str) -> tuple[str, ...]:
    """The text fields ``keys`` of a signed link's payload; 400 for a payload of another
    shape (signed by an older version, or for another purpose)."""
    if not isinstance(value, dict) or not all(isinstance(value.get(k), str) for k in keys):
        raise HTTPException(400, INVALID_LINK)
    return tuple(value[k] for k in keys)


REASONS = {
    400: "This link does not work",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    410: "This link has expired",
    413: "Too much data",
    422: "Please check the form",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Temporarily unavailable",
}


@dataclass
class Site:
    config: Config
    store: Store
    tokens: Tokens
    trusted: list[Network]
    limiter: RateLimiter
    templates: Jinja2Templates = field(repr=False)
    # whether the mail transport takes non-ASCII local parts, and when that was asked
    # (time.monotonic): see mail.address_problem
    utf8_mail: tuple[float, bool] | None = None

    @property
    def secure(self) -> bool:
        return str(self.config["digest.site_url"]).startswith("https://")

    def page(
        self,
        request: Request,
        name: str,
        context: dict[str, Any] | None = None,
        *,
        status: int = 200,
        private: bool = False,
        headers: dict[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> Response:
        """Render a page; ``private`` pages (they show a reader's tokens) are never cached."""
        ctx = {"csrf_token": lambda: csrf_token(request, self.tokens), "version": VERSION}
        ctx.update(context or {})
        response = self.templates.TemplateResponse(
            request, name, ctx, status_code=status, headers=headers, background=background
        )
        response.headers["Cache-Control"] = "no-store" if private else "no-cache"
        set_csrf_cookie(request, response, secure=self.secure)
        return response

    def error(
        self,
        request: Request,
        status: int,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Every error goes out through here, as JSON to API clients, else as error.html."""
        title = REASONS.get(status, "Error")
        accept = request.headers.get("accept", "")
        if "application/json" in accept and "text/html" not in accept:
            return JSONResponse(
                {"error": title, "detail": detail, "status": status},
                status_code=status,
                headers=headers,
            )
        try:
            return self.page(
                request,
                "error.html",
                {"status": status, "title": title, "detail": detail},
                status=status,
                headers=headers,
            )
        except Exception:  # a broken template must not hide the original error
            log.exception("cannot render the error page")
            return HTMLResponse(f"<h1>{status}</h1>", status_code=status, headers=headers)


def make_templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir() / "web")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return Jinja2Templates(env=env)
