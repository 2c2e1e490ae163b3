"""`digestbot send` and `digestbot outbox`: deliver what is due, and look at the outbox."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..states import DIGEST_STATES as STATES
from . import (
    App,
    common_options,
    exit_status,
    nothing_exit_code_option,
    pass_app,
    print_json,
    progress_bars,
    stop_on_signals,
)

if TYPE_CHECKING:
    from ..deliver.sender import SendReport


def summary(report: SendReport) -> str:
    if report.dry_run:
        return f"Dry run: wrote {report.sent} due digests as .eml files; the outbox is unchanged."
    line = (
        f"Sent {report.sent} digests in {report.elapsed:.1f} s ({report.rate:.0f}/s) "
        f"via {report.transport}: {report.retried} to retry, {report.failed} failed, "
        f"{report.bounced} bounced."
    )
    if report.released:
        line += f" {report.released} given back to the queue."
    return line


@click.command("send")
@common_options
@click.option("--limit", type=click.IntRange(min=1), help="Send at most N digests.")
@click.option(
    "--dry-run", is_flag=True, help="Write due digests as .eml files to delivery.outdir only."
)
@click.option(
    "--worker",
    is_flag=True,
    help="Run as one of several senders sharing the store (e.g. on PostgreSQL): claims "
    "batches until nothing is due and no other worker's claim can come back; one summary line.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@nothing_exit_code_option
@pass_app
def send_command(
    app: App,
    limit: int | None,
    dry_run: bool,
    worker: bool,
    as_json: bool,
    nothing_exit_code: int,
) -> None:
    """Send the digests that are due in the outbox.

    Delivers through delivery.transport (maildir, smtp or file). Temporary failures are retried
    later with backoff; exits 3 if any digest was not delivered.

    \b
    Example:
      digestbot send --worker
    """
    from ..deliver import send_due
    from ..deliver.worker import run_worker

    store = app.store()
    with stop_on_signals(app) as stop, progress_bars(app, enabled=not as_json) as bars:
        if worker and not dry_run and limit is None:
            report = run_worker(store, app.config, stop=stop)
        else:
            report = send_due(
                store,
                app.config,
                limit=limit,
                dry_run=dry_run,
                progress=bars.stage("send"),
                stop=stop,
            )
    if as_json:
        print_json(report.as_dict())
    elif worker:
        click.echo(f"worker {report.worker_id}: {summary(report)}")
    elif report.due == 0:
        click.echo("Nothing is due.")
    else:
        click.echo(summary(report))
    if report.error:
        click.echo(f"Error: stopped early: {report.error}", err=True)
        click.echo("Hint: The rest stays queued; run `digestbot send` again later.", err=True)
    if report.limited:
        click.echo(
            "Daily limit reached (smtp.daily_limit); the rest waits for the next run.", err=True
        )
    click.get_current_context().exit(exit_status(not report.ok, report.due > 0, nothing_exit_code))


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


@click.command("outbox")
@common_options
@click.option("--state", type=click.Choice(STATES), help="Only digests in this state.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print counts and rows as JSON.")
@click.option(
    "--requeue-failed", is_flag=True, help="Put failed digests back in the queue, then show."
)
@pass_app
def outbox_command(
    app: App, state: str | None, limit: int, as_json: bool, requeue_failed: bool
) -> None:
    """Show the outbox: digests per state, and the newest rows.

    \b
    Example:
      digestbot outbox --state failed --limit 20
    """
    from ..deliver import list_digests, requeue, state_counts

    store = app.store()
    if requeue_failed:
        n = requeue(store, failed=True)
        if not as_json:
            click.echo(f"Requeued {n} failed digests.")
    counts = state_counts(store)
    rows = list_digests(store, state=state, limit=limit)
    if as_json:
        print_json({"counts": counts, "digests": rows})
        return
    if not counts:
        click.echo("The outbox is empty.")
        return
    click.echo("  ".join(f"{s}: {counts[s]}" for s in STATES if s in counts))
    if not rows:
        return
    header = ("id", "period", "recipient", "state", "tries", "next/sent", "last error")
    table = [header] + [
        (
            str(r["id"]),
            r["period"],
            r["recipient"],
            r["state"],
            str(r["attempts"]),
            _when(r["sent_at"] or r["next_attempt_at"]),
            (r["last_error"] or "")[:60],
        )
        for r in rows
    ]
    # plain aligned columns: the same in a terminal, a pipe or a log
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@click.command("mailbox")
@common_options
@click.option("--limit", type=click.IntRange(min=1), help="Read at most N mails.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@nothing_exit_code_option
@pass_app
def mailbox_command(app: App, limit: int | None, as_json: bool, nothing_exit_code: int) -> None:
    """Read the bounce mailbox over IMAP: apply bounces and unsubscribe mails.

    A hard bounce (5.x.x) marks the reader bounced, temporary ones (4.x.x) count toward
    mailbox.soft_bounce_limit, a mail to the List-Unsubscribe address unsubscribes. Each
    mail then moves to mailbox.processed_folder, or mailbox.unknown_folder for a person to
    read. Exits 3 if a mail could not be applied (it stays for the next run).

    \b
    Example:
      digestbot mailbox --json    # password from DIGESTBOT_MAILBOX_PASSWORD
    """
    from ..deliver.mailbox import MailboxSettings, read_mailbox

    MailboxSettings.from_config(app.config)  # a missing setting is named before the store
    report = read_mailbox(app.store(), app.config, limit=limit)
    if as_json:
        print_json(report.as_dict())
    else:
        for line in report.summary_lines():
            click.echo(line)
        for error in report.errors:
            click.echo(f"Error: {error}", err=True)
    click.get_current_context().exit(
        exit_status(report.failed > 0, report.read > 0, nothing_exit_code)
    )


COMMANDS = [send_command, outbox_command, mailbox_command]
