"""`digestbot serve`: the web front under uvicorn."""

from __future__ import annotations

import ipaddress

import click

from . import App, _set_override, common_options, pass_app


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@click.command("serve")
@common_options
@click.option(
    "--host",
    metavar="ADDRESS",
    expose_value=False,
    callback=_set_override("web.host"),
    help="Address to listen on [default: web.host, 127.0.0.1].",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    expose_value=False,
    callback=_set_override("web.port"),
    help="Port to listen on [default: web.port, 8080].",
)
@pass_app
def serve(app: App) -> None:
    """Serve the subscribe page, preferences, unsubscribe links and feeds.

    Put it behind a reverse proxy for HTTPS and set digest.site_url to the public address;
    see the README section "The web front".
    """
    import uvicorn

    from ..web import create_app

    config = app.config
    web_app = create_app(config)
    host, port = config["web.host"], config["web.port"]
    err = app.err
    err.print(
        f"digestbot: serving on http://{host}:{port}/ (links point to {config['digest.site_url']})"
    )
    if not _is_loopback(host) and config["digest.site_url"].startswith("http://127.0.0.1"):
        err.print(
            "Warning: listening on a public address while digest.site_url is the default; "
            "links in emails will not work. Set DIGESTBOT_DIGEST_SITE_URL."
        )
    uvicorn.run(
        web_app,
        host=host,
        port=port,
        # X-Forwarded-For is read by the app, from web.trusted_proxies only
        proxy_headers=False,
        server_header=False,
        # request paths carry signed tokens (unsubscribe, preferences): never log them
        access_log=False,
        log_level="warning" if app.quiet else "info",
        timeout_graceful_shutdown=10,
    )


COMMANDS = [serve]
