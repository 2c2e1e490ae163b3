"""`digestbot db`: schema migrations."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from . import App, common_options, pass_app, progress_bars

if TYPE_CHECKING:
    from ..store.copy import CopyReport


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
    from ..store import open_store
    from ..store.db import current_revision, upgrade

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
    from ..store import open_store
    from ..store.db import current_revision, head_revision

    store = open_store(app.config["store.db"], create=False, migrate=False)
    try:
        click.echo(f"store:    {store.engine.url.render_as_string(hide_password=True)}")
        click.echo(f"current:  {current_revision(store) or 'empty'}")
        click.echo(f"head:     {head_revision(store)}")
    finally:
        store.dispose()


@db_group.command("copy")
@click.argument("source", metavar="SRC_URL")
@click.argument("destination", metavar="DST_URL")
@common_options
@pass_app
def db_copy(app: App, source: str, destination: str) -> None:
    """Copy a whole store (SRC_URL) into a new, empty one (DST_URL), e.g. SQLite to PostgreSQL.

    Every table, ids and tokens included: links already sent keep working and nobody gets
    a digest twice. DST_URL must be migrated (`digestbot db upgrade --db DST_URL`) and
    empty; the copy is one transaction there, and the row counts of every table are checked
    before it commits. Stop the timer, the daemon and the web front while it runs.

    \b
    Example:
      digestbot db upgrade --db postgresql+psycopg://digestbot@db.example.org/digestbot
      digestbot db copy /var/lib/digestbot/digestbot.db \\
          postgresql+psycopg://digestbot@db.example.org/digestbot
    """
    report = _copy(app, source, destination)
    width = max(len(t.table) for t in report.tables)
    for t in report.tables:
        click.echo(f"{t.table + ':':<{width + 1}} {t.copied:>9} rows  (source {t.source})")
    click.echo(
        f"Copied {report.rows} rows in {len(report.tables)} tables from {report.source} "
        f"to {report.destination}; every count matches."
    )


def _copy(app: App, source: str, destination: str) -> CopyReport:
    from ..store import open_store
    from ..store.copy import copy_store

    src = open_store(source, create=False)
    try:
        dst = open_store(destination, create=False)
        try:
            with progress_bars(app) as bars:
                return copy_store(src, dst, progress=bars)
        finally:
            dst.dispose()
    finally:
        src.dispose()


COMMANDS = [db_group]
