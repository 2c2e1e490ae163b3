"""`digestbot db`: schema migrations, and pruning old history."""

from __future__ import annotations

import re
from contextlib import ExitStack
from dataclasses import asdict
from datetime import timedelta

import click

from . import App, common_options, pass_app, print_json, progress_bars

_AGE = re.compile(r"^\s*(\d+)\s*([dw]?)\s*$")


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
    from ..store.db import current_revision, upgrade

    store = app.store(create=True, migrate=False)
    before = current_revision(store)
    upgrade(store)
    after = current_revision(store)
    if before == after:
        click.echo(f"Schema is current (revision {after}).")
    else:
        click.echo(f"Upgraded schema from {before or 'empty'} to {after}.")


@db_group.command("embed")
@common_options
@pass_app
def db_embed(app: App) -> None:
    """Embed the papers that have no embedding yet (scoring.semantic must be on).

    Papers ingested while scoring.semantic is on are embedded then; this catches up on those
    ingested before (scoring also embeds them when it first meets them). The configuration
    (or DIGESTBOT_SCORING_SEMANTIC and DIGESTBOT_SCORING_MODEL_DIR) turns it on.

    \b
    Example:
      digestbot db embed --config /etc/digestbot/digestbot.toml
    """
    from ..errors import ConfigError
    from ..ingest.embed import embed_missing, encoder

    enc = encoder(app.config)
    if enc is None:
        raise ConfigError(
            "scoring.semantic is off: nothing to embed",
            field="scoring.semantic",
            hint="Set scoring.semantic = true (and scoring.model_dir) first.",
        )
    done = embed_missing(app.store(), enc)
    click.echo(f"Embedded {done} paper(s) with {enc.key}.")


@db_group.command("status")
@common_options
@pass_app
def db_status(app: App) -> None:
    """Show the schema revision of the store and the newest one available.

    \b
    Example:
      digestbot db status --db /var/lib/digestbot/digestbot.db
    """
    from ..store.db import current_revision, head_revision

    store = app.store(migrate=False)
    click.echo(f"store:    {store.engine.url.render_as_string(hide_password=True)}")
    click.echo(f"current:  {current_revision(store) or 'empty'}")
    click.echo(f"head:     {head_revision(store)}")


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
    from .. import clock
    from ..store.retention import prune

    pruned = prune(app.store(), clock.now() - age)
    if as_json:
        print_json(asdict(pruned))
    else:
        click.echo(
            f"Pruned history older than {age.days} days: {pruned.digests} digests, "
            f"{pruned.used_tokens} used tokens."
        )


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
    from ..store import open_store
    from ..store.copy import copy_store

    with ExitStack() as stores:
        src = open_store(source, create=False)
        stores.callback(src.dispose)
        dst = open_store(destination, create=False)
        stores.callback(dst.dispose)
        with progress_bars(app) as bars:
            report = copy_store(src, dst, progress=bars)
    width = max(len(t.table) for t in report.tables)
    for t in report.tables:
        click.echo(f"{t.table + ':':<{width + 1}} {t.copied:>9} rows  (source {t.source})")
    click.echo(
        f"Copied {report.rows} rows in {len(report.tables)} tables from {report.source} "
        f"to {report.destination}; every count matches."
    )


COMMANDS = [db_group]
