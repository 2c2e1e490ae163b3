"""`digestbot db`: schema migrations, and pruning old history."""

from __future__ import annotations

import re
from datetime import timedelta

import click

from .. import clock
from ..store import open_store
from ..store.db import current_revision, head_revision, upgrade
from ..store.retention import prune
from . import App, common_options, pass_app, print_json

_AGE = re.compile(r"^\s*(\d+)\s*([dw]?)\s*$")


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


def parse_age(value: str) -> timedelta:
    """``90d``, ``12w`` or ``90`` (days)."""
    match = _AGE.match(value)
    if match is None:
        raise click.BadParameter(f"{value!r} is not an age such as 90d or 12w")
    number, unit = int(match.group(1)), match.group(2)
    return timedelta(weeks=number) if unit == "w" else timedelta(days=number)


@db_group.command("prune")
@click.option(
    "--older-than",
    "older_than",
    metavar="AGE",
    help="Delete history older than AGE (90d, 12w) [default: store.retention_days].",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was deleted as JSON.")
@common_options
@pass_app
def db_prune(app: App, older_than: str | None, as_json: bool) -> None:
    """Delete digest history past the retention period: finished outbox rows with their
    papers, the record of papers sent, spent confirmation links. Digests still waiting to
    be sent are kept. `digestbot run` does this after each run.

    \b
    Example:
      digestbot db prune --older-than 90d
    """
    if older_than is not None:
        age = parse_age(older_than)
    elif app.config["store.retention_days"]:
        age = timedelta(days=app.config["store.retention_days"])
    else:
        raise click.UsageError("store.retention_days is 0 (keep all): give --older-than AGE")
    store = open_store(app.config["store.db"])
    try:
        pruned = prune(store, clock.now() - age)
    finally:
        store.dispose()
    if as_json:
        print_json(
            {
                "digests": pruned.digests,
                "sent_papers": pruned.sent_papers,
                "used_tokens": pruned.used_tokens,
            }
        )
    else:
        click.echo(
            f"Pruned history older than {age.days} days: {pruned.digests} digests, "
            f"{pruned.sent_papers} sent-paper records, {pruned.used_tokens} used tokens."
        )


COMMANDS = [db_group]
