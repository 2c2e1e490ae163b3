"""`digestbot db`: schema migrations."""

from __future__ import annotations

import click

from ..store import open_store
from ..store.db import current_revision, head_revision, upgrade
from . import App, common_options, pass_app


@click.group("db")
def db_group() -> None:
    """Manage the store's schema."""


@db_group.command("upgrade")
@common_options
@pass_app
def db_upgrade(app: App) -> None:
    """Create the schema or apply pending migrations (`run` and `schedule` do it too).

    \b
    Example:
      digestbot db upgrade --db postgresql+psycopg://digestbot@db.example.org/digestbot
    """
    store = open_store(app.config["store.db"], create=True, migrate=False)
    try:
        before = current_revision(store)
        upgrade(store)
        after = current_revision(store)
    finally:
        store.dispose()
    if before == after:
        click.echo(f"Schema is current (revision {after}).")
    else:
        click.echo(f"Upgraded schema from {before or 'empty'} to {after}.")


@db_group.command("status")
@common_options
@pass_app
def db_status(app: App) -> None:
    """Show the schema revision of the store and the newest one available.

    \b
    Example:
      digestbot db status --db /var/lib/digestbot/digestbot.db
    """
    store = open_store(app.config["store.db"], create=False, migrate=False)
    try:
        click.echo(f"store:    {store.engine.url.render_as_string(hide_password=True)}")
        click.echo(f"current:  {current_revision(store) or 'empty'}")
        click.echo(f"head:     {head_revision(store)}")
    finally:
        store.dispose()


COMMANDS = [db_group]
