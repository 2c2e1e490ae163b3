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
    """Apply pending migrations (also done automatically on first use)."""
    store = open_store(app.config["store.db"], migrate=False)
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
    """Show the schema revision of the store and the newest one available."""
    store = open_store(app.config["store.db"], migrate=False)
    try:
        click.echo(f"store:    {store.engine.url.render_as_string(hide_password=True)}")
        click.echo(f"current:  {current_revision(store) or 'empty'}")
        click.echo(f"head:     {head_revision(store)}")
    finally:
        store.dispose()


COMMANDS = [db_group]
