"""`digestbot ingest` and `digestbot papers`."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

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

if TYPE_CHECKING:
    from rich.table import Table

    from ..ingest import IngestReport


def _summary(report: IngestReport) -> str:
    parts = [
        f"{report.files} file{'s' if report.files != 1 else ''}",
        f"{report.papers_new} new paper{'s' if report.papers_new != 1 else ''}",
        f"{report.papers_updated} updated",
    ]
    if report.skipped:
        parts.append(f"{report.skipped} already ingested")
    if report.failed:
        parts.append(f"{len(report.failed)} failed")
    return "Ingested " + ", ".join(parts) + "."


def _table(report: IngestReport) -> Table:
    from rich.table import Table

    table = Table(title=None, show_edge=False, pad_edge=False)
    table.add_column("File", no_wrap=True, overflow="ellipsis", min_width=12)
    table.add_column("Format", no_wrap=True)
    table.add_column("Listed", no_wrap=True, min_width=10)
    for name in ("Papers", "New", "Updated"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("Status", no_wrap=True, min_width=7)
    for d in report.dumps:
        ok = d.status == "ok"
        table.add_row(
            Path(d.file).name,
            (d.format or "").removeprefix("hf-"),
            d.listed_on.isoformat() if d.listed_on else "",
            str(d.entries) if ok else "",
            str(len(d.new_ids)) if ok else "",
            str(len(d.updated_ids)) if ok else "",
            {"ok": "ok", "skipped": "skipped"}.get(d.status, "[red]failed[/red]"),
        )
    return table


@click.command("ingest")
@common_options
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path, readable=False))
@click.option("--inbox", "use_inbox", is_flag=True, help="Take new files from the inbox folder.")
@click.option(
    "--date",
    "listing_date",
    type=DATE,
    metavar="YYYY-MM-DD",
    help="Listing date of the dumps (else the month and day in the file, in the latest year "
    "not after the file's modification time).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@nothing_exit_code_option
@pass_app
def ingest_command(
    app: App,
    paths: tuple[Path, ...],
    use_inbox: bool,
    listing_date: datetime | None,
    as_json: bool,
    nothing_exit_code: int,
) -> None:
    """Ingest Hugging Face Daily Papers dumps from files, folders, or the inbox.

    Reads the Daily Papers page saved as text and the daily_papers API JSON, telling
    them apart by content. Each dump goes in whole or not at all; a bad dump is reported
    and the others go on. Exit codes: 0 all went in, 1 every file failed, 3 some failed.

    \b
    Example:
      digestbot ingest seeds/ --json
    """
    from ..ingest import IngestReport, ingest_inbox, ingest_paths
    from ..store import run_lock

    if not paths and not use_inbox:
        raise click.UsageError("give one or more PATHs, or --inbox")
    config = app.config
    day: date | None = listing_date.date() if listing_date else None
    max_bytes = int(config["ingest.max_file_mb"]) * 1024 * 1024
    # a store starts with its first papers: `digestbot ingest page.txt` is the first command
    # people try, so it may create one (read-only commands may not)
    store = app.store(create=True)
    report = IngestReport()
    with run_lock(store, config, "ingest"):
        with progress_bars(app, enabled=not as_json) as bars:
            if paths:
                report = ingest_paths(
                    store,
                    list(paths),
                    listing_date=day,
                    max_bytes=max_bytes,
                    progress=bars.stage("ingest"),
                )
            if use_inbox:
                inbox_report = ingest_inbox(
                    store,
                    config.path("ingest.inbox"),
                    listing_date=day,
                    max_bytes=max_bytes,
                    progress=bars.stage("inbox"),
                )
                report.dumps.extend(inbox_report.dumps)
                # what the inbox skipped (a FIFO, a folder) is said as for given paths
                report.notes.extend(inbox_report.notes)
        # scoring.semantic: new papers are embedded once, here, not at every scoring run
        from ..ingest.embed import embed_if_on

        embed_if_on(store, config)

    for warning in report.warnings:
        click.echo(f"Warning: {warning}", err=True)
    if as_json:
        print_json(report.as_dict())
    else:
        for failure in report.failed:
            fail(failure)
        if report.dumps:
            app.console.print(_table(report))
        click.echo(_summary(report))
    failed, done = len(report.failed), bool(report.papers_new or report.papers_updated)
    code = exit_status(failed > 0, done, nothing_exit_code, all_failed=failed == report.files)
    click.get_current_context().exit(code)


@click.command("papers")
@common_options
@click.option("--since", type=DATE, metavar="YYYY-MM-DD", help="Only papers listed on or after.")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many papers.")
@click.option("--json", "as_json", is_flag=True, help="Print the papers as JSON.")
@pass_app
def papers_command(app: App, since: datetime | None, limit: int | None, as_json: bool) -> None:
    """List the papers the store holds, newest listing first.

    \b
    Example:
      digestbot papers --since 2026-11-01 --limit 20
    """
    from rich.table import Table

    from ..ingest import list_papers, store_counts

    store = app.store()
    papers = list_papers(store, since=since.date() if since else None, limit=limit)
    if as_json:
        print_json(papers)
        return
    if not papers:
        click.echo(
            "No papers"
            + (f" listed since {since.date().isoformat()}" if since else "")
            + ". Run `digestbot ingest PATH` to add some."
        )
        return
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("ID", no_wrap=True, min_width=17)
    table.add_column("Listed", no_wrap=True, min_width=10)
    table.add_column("Published", no_wrap=True, min_width=10)
    table.add_column("Up", justify="right", no_wrap=True, min_width=2)
    table.add_column("Title", overflow="ellipsis", no_wrap=True)
    for p in papers:
        table.add_row(
            p["id"],
            p["listed_on"].isoformat() if p["listed_on"] else "",
            p["published_on"].isoformat() if p["published_on"] else "",
            "" if p["upvotes"] is None else str(p["upvotes"]),
            p["title"],
        )
    app.console.print(table)
    counts = store_counts(store)
    shown = (
        f"{len(papers)} of {counts['papers']}"
        if len(papers) != counts["papers"]
        else str(counts["papers"])
    )
    click.echo(
        f"{shown} papers from {counts['dumps']} dump{'s' if counts['dumps'] != 1 else ''}"
        + (f" ({counts['failed_dumps']} failed)" if counts["failed_dumps"] else "")
        + "."
    )


COMMANDS = [ingest_command, papers_command]
