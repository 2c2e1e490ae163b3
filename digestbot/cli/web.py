"""`digestbot serve`: the web front under uvicorn."""

from __future__ import annotations

import errno
import socket

import click

from ..errors import ConfigError
from . import App, _set_override, common_options, pass_app


def _check_port(host: str, port: int) -> None:
    """Fail with a hint before start-up when the address is taken or not ours to use."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            field="web.host",
            hint="Use an address of this machine, e.g. 127.0.0.1 behind a reverse proxy.",
        ) from None
    family, kind, proto, _name, address = infos[0]
    probe = socket.socket(family, kind, proto)
    try:
        # as uvicorn binds: a port in TIME_WAIT is free, one with a listener is not
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
    except OSError as exc:
        busy = exc.errno == errno.EADDRINUSE
        raise ConfigError(
            f"cannot listen on {host}:{port}: "
            + ("the address is already in use" if busy else str(exc.strerror)),
            field="web.port",
            hint=(
                "Another program (or another `digestbot serve`) listens there: stop it, or "
                "pick another port with --port or web.port."
                if busy
                else "Pick an address and port this user may use (ports below 1024 need "
                "privileges) with --host/--port."
            ),
        ) from None
    finally:
        probe.close()


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
    see the README section "The web front". It never migrates the store: run
    `digestbot db upgrade` first (the systemd unit does, in ExecStartPre).

    \b
    Example:
      digestbot serve --host 127.0.0.1 --port 8080
    """
    import uvicorn

    from ..deliver.safety import is_loopback_host
    from ..web import create_app

    config = app.config
    host, port = config["web.host"], config["web.port"]
    web_app = create_app(config)  # settings and the store first: their errors say more
    try:
        _check_port(host, port)
    except ConfigError:
        web_app.state.site.store.dispose()
        raise
    err = app.err
    err.print(
        f"digestbot: serving on http://{host}:{port}/ (links point to {config['digest.site_url']})"
    )
    if not is_loopback_host(host) and config["digest.site_url"].startswith("http://127.0.0.1"):
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
