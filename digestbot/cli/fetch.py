"""`digestbot fetch`: paper listings from their sources into the inbox."""

from __future__ import annotations

import sys
from datetime import datetime

import click

from .. import clock
from ..config import BY_NAME
from . import (
    DATE,
    App,
    common_options,
    exit_status,
    fail,
    nothing_exit_code_option,
    pass_app,
    print_json,
    progress_bars,
)


@click.command("fetch")
@common_options
@click.option(
    "--date",
    "day",
    type=DATE,
    metavar="YYYY-MM-DD",
    help="Fetch this day's listing (default: today's, by the clock).",
)
@click.option(
    "--since",
    type=DATE,
    metavar="YYYY-MM-DD",
    help="Backfill: every day from this one to today, one request per day per source.",
)
@click.option(
    "--source",
    "sources",
    multiple=True,
    type=click.Choice(BY_NAME["fetch.sources"].choices),
    help="Fetch this source (repeatable; default: those in fetch.sources).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@nothing_exit_code_option
@pass_app
def fetch_command(
    app: App,
    day: datetime | None,
    since: datetime | None,
    sources: tuple[str, ...],
    as_json: bool,
    nothing_exit_code: int,
) -> None:
    """Fetch paper listings into the inbox, for `digestbot ingest --inbox` or the next run.

    hf: the Hugging Face Daily Papers API, one request per day, saved as
    hf-YYYY-MM-DD.json. arxiv: the arXiv API's newest submissions in fetch.arxiv_categories
    (one query; with --date or --since one per day), saved as
    arxiv-<categories>-YYYY-MM-DD.atom. An answer that did not change since the last fetch,
    or a day without papers, writes nothing. Exit status: 0 something written, 3 some
    requests failed, 1 all failed, 4 nothing new (--nothing-exit-code changes it).

    \b
    Example:
      digestbot fetch --source hf --date 2026-11-20
      digestbot fetch --since 2026-11-01 && digestbot ingest --inbox
    """
    from ..fetch import days_between, fetch_sources

    if day is not None and since is not None:
        raise click.UsageError("give --date or --since, not both")
    today = clock.now().date()
    days = None
    if day is not None:
        if day.date() > today:
            raise click.BadParameter(f"{day.date()} is after today ({today})", param_hint="--date")
        days = [day.date()]
    elif since is not None:
        days = days_between(since.date(), today)
    with progress_bars(app, enabled=not as_json) as bars:
        report = fetch_sources(
            app.config, sources=list(sources) or None, days=days, progress=bars.stage("fetch")
        )
    failed = report.failed
    all_failed = len(failed) == len(report.results)
    code = exit_status(bool(failed), report.written > 0, nothing_exit_code, all_failed=all_failed)
    if as_json:
        print_json({**report.as_dict(), "exit_code": code})
        sys.exit(code)
    for result in report.results:
        if result.status == "failed":
            fail(result)
        elif not app.quiet:
            click.echo(str(result))
    click.echo(
        f"Fetched: {report.written} written, {report.unchanged} unchanged, "
        f"{report.empty} empty, {len(failed)} failed."
    )
    sys.exit(code)


COMMANDS = [fetch_command]
