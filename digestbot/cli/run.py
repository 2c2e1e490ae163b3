"""`digestbot run`, `schedule`, `demo` and `config`: the commands an operator schedules."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click

from ..config import BY_NAME, SETTINGS, example_toml, toml_value
from ..resources import seeds_dir
from . import (
    EXIT_OK,
    EXIT_PARTIAL,
    App,
    common_options,
    nothing_exit_code_option,
    now_option,
    pass_app,
    print_json,
    progress_bars,
    stop_on_signals,
)


def _log_level(app: App) -> None:
    """Log lines at the configured level unless -v asked for more."""
    logger = logging.getLogger("digestbot")
    if logger.level == logging.NOTSET and logging.getLogger().level >= logging.WARNING:
        logger.setLevel(app.config["log.level"].upper())


@click.command("run")
@common_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@nothing_exit_code_option
@click.option("--no-fetch", is_flag=True, help="Do not fetch the sources in fetch.sources.")
@click.option("--no-ingest", is_flag=True, help="Skip the inbox (and fetching).")
@click.option("--no-send", is_flag=True, help="Queue digests but leave sending to a later run.")
@pass_app
def run_command(
    app: App,
    as_json: bool,
    nothing_exit_code: int,
    no_fetch: bool,
    no_ingest: bool,
    no_send: bool,
) -> None:
    """Run the whole pipeline once: fetch the sources in fetch.sources (if any), ingest,
    select who is due, score, render, queue, send, write feeds.

    One run at a time: a second one exits at once with status 1. Exit status: 0 done,
    3 something failed or waits for a retry (see the summary), 4 nothing to do
    (--nothing-exit-code changes it), 1 error before the run could start. A source that
    cannot be fetched is reported and the run goes on with what the inbox holds (exit 3).

    \b
    Example:
      digestbot run -q --nothing-exit-code 0
      digestbot run --now 2026-11-22T08:00Z --no-send    # replay a moment, queue only
    """
    from ..pipeline import run_once

    _log_level(app)
    started = time.perf_counter()
    # SIGTERM (systemctl stop) as for `send`: finish the messages in flight, give back the
    # rest, print the summary
    with stop_on_signals(app) as stop, progress_bars(app, enabled=not as_json) as bars:
        report = run_once(
            app.store(create=True),
            app.config,
            stop=stop,
            progress=bars,
            ingest=not no_ingest,
            send=not no_send,
            fetch=not no_fetch,
        )
    took = time.perf_counter() - started
    code = {"ok": EXIT_OK, "partial": EXIT_PARTIAL, "nothing": nothing_exit_code}[report.status]
    if as_json:
        print_json({**report.as_dict(), "seconds": round(took, 3), "exit_code": code})
    elif not (app.quiet and report.status == "nothing"):
        click.echo(f"digestbot run at {report.now.isoformat(timespec='seconds')}")
        for line in report.summary_lines():
            click.echo(line)
        click.echo(f"result:  {report.status} in {took:.2f} s (exit {code})")
    sys.exit(code)


CRON_JOBS = ("ingest", "digest", "send")


@click.command("schedule")
@common_options
@click.option(
    "--list", "list_jobs", is_flag=True, help="Show the jobs and their next runs, then exit."
)
@pass_app
def schedule_command(app: App, list_jobs: bool) -> None:
    """Run the daemon: ingest, digest and outbox jobs on the cron times in [schedule].

    Stops cleanly on SIGTERM or SIGINT: no new job starts, the running one stops between
    stages and after the message in flight; unsent digests wait in the outbox. Exits 0.

    \b
    Example:
      digestbot schedule --list
    """
    from ..schedule import Jobs, build_scheduler, run_daemon

    config = app.config
    if list_jobs:
        scheduler = build_scheduler(config, Jobs(app.store(create=True), config))
        scheduler.start(paused=True)
        try:
            for job in scheduler.get_jobs():
                cron = config[f"schedule.{job.id}_cron"] if job.id in CRON_JOBS else "once"
                when = job.next_run_time.isoformat(timespec="seconds")
                click.echo(f"{job.id:<16} {cron:<14} next: {when}  ({job.name})")
        finally:
            scheduler.shutdown(wait=False)
        return
    _log_level(app)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    sys.exit(run_daemon(app.store(create=True), config))


@click.command("demo")
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo"),
    show_default=True,
    help="Folder for the demo's store, Maildir and feeds (emptied and refilled each time).",
)
@now_option
@pass_app
def demo_command(app: App, folder: Path) -> None:
    """Try it out: ingest the seed listings, add example readers, deliver their digests into
    a Maildir and feeds in ./demo, and show who got which papers and why.

    \b
    Example:
      digestbot demo --dir /tmp/digestbot-demo
    """
    from rich.table import Table

    from ..pipeline.demo import run_demo

    seeds = seeds_dir()
    result = run_demo(folder, seeds)
    out = app.console
    report = result.report
    echo = click.echo if not app.quiet else (lambda *_a, **_k: None)
    echo(
        f"Ingested {report.files} seed files from {seeds}: {report.papers_new} papers. "
        f"Added {len(result.readers)} example readers."
    )
    for reader in result.readers:
        table = Table(
            title=f"{reader.name} <{reader.email}>: {reader.schedule}, {reader.formats}"
            f" ({reader.state or 'no digest'})",
            title_justify="left",
        )
        table.add_column("#", justify="right")
        table.add_column("paper", overflow="fold")
        table.add_column("score", justify="right")
        table.add_column("why (matched interests)", overflow="fold")
        for rank, (title, score, why) in enumerate(reader.papers, 1):
            table.add_row(str(rank), title, f"{score:.2f}", why)
        out.print(table)
    for line in report.summary_lines():
        echo(line)
    echo("\nOpen:")
    echo(f"  Store:   {result.store}  (SQLite)")
    echo(f"  Maildir: {result.maildir}  (mutt -f {result.maildir})")
    for path in result.html[:1]:
        echo(f"  HTML:    {path}  (one per reader in {path.parent})")
    for reader in [r for r in result.readers if r.feed is not None][:1]:
        assert reader.feed is not None
        echo(f"  Feed:    {reader.feed}  ({reader.name}'s; all feeds in {reader.feed.parent})")
    db = _shown(result.store)
    echo("\nNext, try (every command takes the demo's store with --db):")
    echo(f"  digestbot subscribers list --db {db}")
    echo(f'  digestbot rank -k "speech recognition, diffusion" --top 5 --db {db}')
    echo(f"  digestbot preview --subscriber 1 --db {db}")
    if report.status == "partial":
        sys.exit(EXIT_PARTIAL)


def _shown(path: Path) -> str:
    """A path as short as it can be typed from here."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@click.command("config")
@common_options
@click.option("--json", "as_json", is_flag=True, help="Print the configuration as JSON.")
@click.option(
    "--example", is_flag=True, help="Print a commented digestbot.toml with every setting."
)
@click.option("--help-settings", is_flag=True, help="List every setting with its type and help.")
@pass_app
def config_command(app: App, as_json: bool, example: bool, help_settings: bool) -> None:
    """Show the effective configuration (secrets masked) and where each value came from.

    \b
    Example:
      digestbot config --example > digestbot.example.toml
    """
    if example:
        click.echo(example_toml(), nl=False)
        return
    if help_settings:
        for s in SETTINGS:
            click.echo(f"{s.name} ({s.type}, default {toml_value(s.default)}, env {s.env})")
            click.echo(f"    {s.help}")
        return
    config = app.config
    values = config.masked()
    if as_json:
        print_json(
            {
                "file": str(config.file) if config.file else None,
                "settings": values,
                "sources": config.sources,
            }
        )
        return
    click.echo(f"# file: {config.file or 'none (defaults and environment only)'}")
    for name, value in values.items():
        source = config.sources.get(name, "default")
        shown = value if BY_NAME[name].secret and value else toml_value(value)
        suffix = "" if source == "default" else f"  # from {source}"
        click.echo(f"{name} = {shown}{suffix}")


COMMANDS = [run_command, schedule_command, demo_command, config_command]
