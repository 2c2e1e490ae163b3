"""`digestbot subscribers`: add, list, show, update, remove, import, export."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..periods import FREQUENCIES, describe
from ..states import FORMATS, STATUSES
from . import EXIT_PARTIAL, App, common_options, fail, pass_app, print_json

IMPORT_BATCH = 1000


def _profile_options(func: Any, *, defaults: bool) -> Any:
    """The same options for add and update; update has no defaults (None = unchanged)."""

    def d(value: Any) -> Any:
        return value if defaults else None

    options = [
        click.option("--name", default=d(""), help="Display name."),
        click.option(
            "--keywords",
            "-k",
            default=None,
            help="Comma-separated phrases, e.g. 'sparse autoencoders, interpretability'.",
        ),
        click.option(
            "--like", "liked", multiple=True, metavar="PAPER_ID", help="A paper they liked."
        ),
        click.option(
            "--dislike",
            "disliked",
            multiple=True,
            metavar="PAPER_ID",
            help="A paper they did not want.",
        ),
        click.option(
            "--frequency", type=click.Choice(FREQUENCIES), default=d("daily"), show_default=defaults
        ),
        click.option(
            "--weekday",
            default=d("monday"),
            show_default=defaults,
            help="Day of a weekly digest: a name (mon, tuesday...) or 0-6 (0 is Monday).",
        ),
        click.option(
            "--send-hour",
            type=click.IntRange(0, 23),
            default=d(8),
            show_default=defaults,
            help="Local hour, 0-23.",
        ),
        click.option(
            "--timezone",
            "--tz",
            "timezone",
            default=d("UTC"),
            show_default=defaults,
            help="IANA time zone, e.g. Europe/Berlin.",
        ),
        click.option(
            "--max-items",
            type=int,
            default=None,
            help="Papers per digest at most [default: digest.max_items].",
        ),
        click.option(
            "--min-score",
            type=float,
            default=None,
            help="Lowest score included [default: digest.min_score].",
        ),
        click.option(
            "--formats", type=click.Choice(FORMATS), default=d("email"), show_default=defaults
        ),
        click.option(
            "--status", type=click.Choice(STATUSES), default=d("active"), show_default=defaults
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group("subscribers")
def subscribers_group() -> None:
    """Manage subscribers: who gets which papers, how often, in which format."""


@subscribers_group.command("add")
@click.argument("email")
@lambda f: _profile_options(f, defaults=True)
@click.option("--json", "as_json", is_flag=True, help="Print the new subscriber as JSON.")
@common_options
@pass_app
def add_command(app: App, email: str, as_json: bool, **values: Any) -> None:
    """Add a subscriber with EMAIL.

    \b
    Example:
      digestbot subscribers add ada@example.org -k "sparse autoencoders, interpretability"
    """
    from ..store.subscribers import add_subscriber, as_dict

    values["keywords"] = values["keywords"] or ()
    for key in ("max_items", "min_score"):
        if values[key] is None:
            values[key] = app.config[f"digest.{key}"]
    with app.store().session() as session:
        sub = add_subscriber(session, email=email, **values)
        data = as_dict(session, sub)
    if as_json:
        print_json(data)
    else:
        click.echo(f"Added subscriber {data['id']}: {data['email']}")


@subscribers_group.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only subscribers with this status.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@common_options
@pass_app
def list_command(app: App, status: str | None, as_json: bool) -> None:
    """List subscribers, with their schedules in their own time zones.

    \b
    Example:
      digestbot subscribers list --status active
    """
    from rich.table import Table
    from sqlalchemy import select

    from ..store import Subscriber
    from ..store.subscribers import as_dict

    query = select(Subscriber).order_by(Subscriber.id)
    if status:
        query = query.where(Subscriber.status == status)
    with app.store().session() as session:
        subs = list(session.scalars(query))
        if as_json:
            print_json([as_dict(session, s) for s in subs])
            return
    if not subs:
        click.echo("No subscribers.")
        return
    table = Table("id", "email", "name", "status", "schedule", "keywords", box=None)
    for s in subs:
        table.add_row(
            str(s.id),
            s.email,
            s.name,
            s.status,
            describe(s.frequency, s.weekday, s.send_hour, s.timezone),
            ", ".join(s.keywords or []),
        )
    app.console.print(table)
    click.echo(f"{len(subs)} subscriber{'s' if len(subs) != 1 else ''}")


@subscribers_group.command("show")
@click.argument("subscriber")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--tokens", is_flag=True, help="Include the feed and preference tokens.")
@common_options
@pass_app
def show_command(app: App, subscriber: str, as_json: bool, tokens: bool) -> None:
    """Show one SUBSCRIBER (id, email address or token).

    \b
    Example:
      digestbot subscribers show ada@example.org --tokens
    """
    from ..store.subscribers import as_dict, get_subscriber

    with app.store().session() as session:
        data = as_dict(session, get_subscriber(session, subscriber), secrets_too=tokens)
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        if isinstance(value, list):
            value = ", ".join(value) if key == "keywords" else " ".join(value)
        click.echo(f"{key + ':':<16}{'' if value is None else value}")


@subscribers_group.command("update")
@click.argument("subscriber")
@click.option("--email", default=None, help="New address.")
@lambda f: _profile_options(f, defaults=False)
@click.option(
    "--unlike", multiple=True, metavar="PAPER_ID", help="Clear a like or dislike of a paper."
)
@common_options
@pass_app
def update_command(app: App, subscriber: str, unlike: tuple[str, ...], **values: Any) -> None:
    """Change SUBSCRIBER (id, email address or token); options not given stay as they are.

    \b
    Example:
      digestbot subscribers update 1 --like 2501.01234 --send-hour 7 --tz Europe/Berlin
    """
    from ..store.subscribers import get_subscriber, parse_ids, set_feedback, update_subscriber

    changes = {k: v for k, v in values.items() if v not in (None, ())}
    with app.store().session() as session:
        sub = get_subscriber(session, subscriber)
        for paper_id in parse_ids(unlike):
            set_feedback(session, sub, paper_id, 0)
        update_subscriber(session, sub, **changes)
        click.echo(f"Updated subscriber {sub.id}: {sub.email}")


@subscribers_group.command("remove")
@click.argument("subscriber")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@common_options
@pass_app
def remove_command(app: App, subscriber: str, yes: bool) -> None:
    """Delete SUBSCRIBER with their feedback and digest history.

    To stop mail but keep the history, use `update --status unsubscribed` instead. Asks
    first; without a terminal to ask on (a script, a pipe), --yes is required.

    \b
    Example:
      digestbot subscribers remove ada@example.org --yes
    """
    from ..store.subscribers import get_subscriber, remove_subscriber

    with app.store().session() as session:
        sub = get_subscriber(session, subscriber)
        if not yes:
            if not sys.stdin.isatty():
                raise click.UsageError(
                    f"not deleting {sub.email}: there is no terminal to confirm on; "
                    "pass --yes to delete without asking"
                )
            click.confirm(f"Delete {sub.email} and their history?", abort=True)
        email = sub.email
        remove_subscriber(session, sub)
    click.echo(f"Removed subscriber {email}")


@subscribers_group.command("rotate-tokens")
@click.argument("subscribers", nargs=-1, metavar="SUBSCRIBER...")
@click.option("--all", "everyone", is_flag=True, help="Every subscriber.")
@common_options
@pass_app
def rotate_command(app: App, subscribers: tuple[str, ...], everyone: bool) -> None:
    """Give SUBSCRIBER (id, address or token) new feed and preference tokens.

    Every link already sent to them (preferences, unsubscribe, more/less like this) and
    their feed address stop working, e.g. after a digest was forwarded. Their next digest
    carries the new links; readers can also ask for new links by email from their
    preferences page.

    \b
    Example:
      digestbot subscribers rotate-tokens ada@example.org
    """
    from sqlalchemy import select

    from ..render.feeds import remove_feed_files
    from ..store import Subscriber
    from ..store.subscribers import get_subscriber, rotate_tokens

    if not subscribers and not everyone:
        raise click.UsageError("give one or more SUBSCRIBERs, or --all")
    with app.store().session() as session:
        if everyone:
            chosen = list(session.scalars(select(Subscriber).order_by(Subscriber.id)))
        else:
            chosen = [get_subscriber(session, who) for who in subscribers]
        old_feeds = [rotate_tokens(session, sub)[1] for sub in chosen]
        emails = [sub.email for sub in chosen]
    for token in old_feeds:
        remove_feed_files(app.config, token)
    for email in emails:
        click.echo(f"New links for {email}")
    n = len(emails)
    click.echo(
        f"Rotated the tokens of {n} subscriber{'s' if n != 1 else ''}: their old links and "
        "feed addresses no longer work."
    )


@subscribers_group.command("import")
@click.argument("csv_file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--update",
    is_flag=True,
    help="Update readers whose address is already known instead of failing them.",
)
@common_options
@pass_app
def import_command(app: App, csv_file: str, update: bool) -> None:
    """Add subscribers from a CSV file with a header row ('-' reads standard input).

    Columns: email (required), name, keywords, liked, disliked, frequency, weekday,
    send_hour, timezone, max_items, min_score, formats, status. A bad row is reported with
    its line number and the rest are imported; the exit code is then 3. With --update a
    known address gets the row's columns (ids, links and history stay), so an import can be
    run again.

    \b
    Example:
      digestbot subscribers import subs.csv
    """
    from ..store.subscribers import import_csv

    source: Any = sys.stdin if csv_file == "-" else csv_file
    # committed every thousand rows: a 100,000-row import must not hold the write lock for
    # the minute and a half it takes (the web front would answer "busy" all along)
    store = app.store()
    with store.sessions() as session:
        report = import_csv(session, source, update=update, commit_every=IMPORT_BATCH)
    if report.added or report.updated:
        store.analyze("subscribers")  # a bulk write: PostgreSQL plans from fresh counts
    for _line, error in report.failed:
        fail(error)
    updated = f"{report.updated} updated, " if update else ""
    click.echo(
        f"Imported {report.added} subscriber{'s' if report.added != 1 else ''}, "
        f"{updated}{len(report.failed)} failed."
    )
    if report.known:
        rows = (
            "1 row names an address" if report.known == 1 else f"{report.known} rows name addresses"
        )
        click.echo(
            f"Hint: {rows} already subscribed: pass --update to update them instead.", err=True
        )
    if report.failed:
        sys.exit(EXIT_PARTIAL)


@subscribers_group.command("export")
@click.argument("csv_file", type=click.Path(dir_okay=False, allow_dash=True), default="-")
@click.option("--status", type=click.Choice(STATUSES), help="Only subscribers with this status.")
@common_options
@pass_app
def export_command(app: App, csv_file: str, status: str | None) -> None:
    """Write subscribers as CSV to CSV_FILE (default: standard output).

    \b
    Example:
      digestbot subscribers export subs.csv --status active
    """
    from ..store.subscribers import export_csv

    target: Any = sys.stdout if csv_file == "-" else csv_file
    with app.store().session() as session:
        count = export_csv(session, target, status=status)
    if csv_file != "-":
        click.echo(f"Exported {count} subscriber{'s' if count != 1 else ''} to {csv_file}")


COMMANDS = [subscribers_group]
