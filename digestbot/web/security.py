"""Headers on every response, a cap on request bodies, the client's address, CSRF tokens."""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from collections.abc import Iterable
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..tokens import TokenError, Tokens

CSRF_COOKIE = "digestbot_csrf"
# on https: the browser only accepts it Secure, Path=/, without Domain, from this very host,
# so a sibling subdomain cannot plant a seed of its choosing
CSRF_COOKIE_HOST = "__Host-digestbot_csrf"
# what secrets.token_urlsafe(24) gives; any other cookie value is not ours and is replaced
_SEED = re.compile(r"[A-Za-z0-9_-]{32}")
CSRF_FIELD = "csrf_token"
# A form left open this long still submits; after that the reader reloads the page.
CSRF_MAX_AGE = 12 * 3600

# No inline script or style anywhere: the one script (time zone pre-fill) is a file.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class SecurityHeaders:
    """Adds the security headers to every HTTP response, errors included."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.headers = {
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            # links carry tokens in their path: never hand them to another site
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
            "Cross-Origin-Opener-Policy": "same-origin",
            "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
        }
        if https:
            self.headers["Strict-Transport-Security"] = "max-age=31536000"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"The form is larger than this site accepts ({limit // 1024} KB at most)."
        )


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes without reading them.

    A declared Content-Length over the limit fails on the first read; a chunked body fails as
    soon as the bytes received pass the limit. The error is raised inside the endpoint, so
    it goes through the one error handler like every other error.
    """

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            declared: int | None = int(Headers(scope=scope).get("content-length", ""))
        except ValueError:  # none, or not a number
            declared = None
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if declared is not None and declared > self.limit:
                raise BodyTooLarge(self.limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited_receive, send)


# --- the client's address -------------------------------------------------------------------


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(items: Iterable[str]) -> list[Network]:
    from ..errors import ConfigError

    nets: list[Network] = []
    for item in items:
        try:
            nets.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ConfigError(
                f"not an IP address or network: {item!r}",
                field="web.trusted_proxies",
                hint="List proxy addresses such as 127.0.0.1 or 10.0.0.0/8.",
            ) from None
    return nets


def _trusted(address: str, trusted: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(request: Request, trusted: list[Network]) -> str:
    """The peer, or behind trusted proxies the first X-Forwarded-For hop they did not add.

    Walking from the right matters: a client can put anything at the left of the header,
    only the hops appended by our own proxies are believable.
    """
    peer = request.client.host if request.client else "unknown"
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for v in request.headers.getlist("x-forwarded-for") for h in v.split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _trusted(hop, trusted):
            return hop
    return peer


# --- CSRF: a signed token bound to a random cookie ------------------------------------------


def _cookie_seed(request: Request) -> str | None:
    site = getattr(request.app.state, "site", None) if "app" in request.scope else None
    seed = request.cookies.get(CSRF_COOKIE_HOST if site and site.secure else CSRF_COOKIE, "")
    return seed if _SEED.fullmatch(seed) else None


def csrf_token(request: Request, tokens: Tokens) -> str:
    """The token to put in a form; sets up the cookie it is bound to if there is none."""
    seed = _cookie_seed(request)
    if seed is None:
        seed = getattr(request.state, "new_csrf_seed", None) or secrets.token_urlsafe(24)
        request.state.new_csrf_seed = seed
    return tokens.dumps("csrf", seed)


def set_csrf_cookie(request: Request, response: Any, *, secure: bool) -> None:
    seed = getattr(request.state, "new_csrf_seed", None)
    if seed:
        name = CSRF_COOKIE_HOST if secure else CSRF_COOKIE
        response.set_cookie(name, seed, httponly=True, samesite="lax", secure=secure, path="/")


def check_csrf(request: Request, form: Any, tokens: Tokens) -> None:
    """Raise 403 unless the form's token is ours, fresh, and matches this browser's cookie."""
    seed = _cookie_seed(request)
    token = form.get(CSRF_FIELD, "")
    if not seed or not isinstance(token, str) or not token:
        raise HTTPException(403, _CSRF_MESSAGE)
    try:
        value = tokens.loads("csrf", token, max_age=CSRF_MAX_AGE)
    except TokenError:
        raise HTTPException(403, _CSRF_MESSAGE) from None
    if not isinstance(value, str) or not hmac.compare_digest(value, seed):
        raise HTTPException(403, _CSRF_MESSAGE)


_CSRF_MESSAGE = (
    "This form has expired or did not come from this site. Reload the page and try again."
)
