"""`digestbot preview` and `digestbot feeds`: look at a digest, write the feeds."""

from __future__ import annotations

import secrets
from pathlib import Path

import click

from .. import clock
from ..errors import RenderError
from ..files import write_atomic
from ..periods import current_slot
from . import App, common_options, pass_app, progress_bars


@click.command("preview")
@common_options
@click.option(
    "--subscriber",
    "who",
    required=True,
    metavar="SUBSCRIBER",
    help="Whose digest: an id, email address or token, as for `subscribers show`.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("preview"),
    show_default=True,
    help="Folder for the .html, .txt, .eml and feed files.",
)
@pass_app
def preview(app: App, who: str, out: Path) -> None:
    """Write a subscriber's next digest and feed to files, without sending or recording.

    Prints the paths of the files written. Without a configured secret key the links are
    signed with a throwaway one (they will not work on the site).

    \b
    Example:
      digestbot preview --subscriber ada@example.org --out preview/
    """
    from sqlalchemy import select

    from ..render import render_digest, subscriber_feeds
    from ..render.feeds import recent_entries
    from ..store import Paper
    from ..store.subscribers import get_subscriber

    config = app.config
    throwaway = not config["web.secret_key"]
    if throwaway:
        config = config.replace(web__secret_key=secrets.token_urlsafe(32))
    now = clock.now()
    store = app.store()
    with store.session() as session:
        sub = get_subscriber(session, who)
        history = recent_entries(session, [sub.id], int(config["digest.feed_items"]))[sub.id]
    from ..scoring.engine import score_subscribers  # scikit-learn: only when scoring

    picks = next(iter(score_subscribers(store, [sub], now=now, config=config)), None)
    chosen = picks.picks if picks is not None else []
    with store.session() as session:
        wanted = [p.paper_id for p in chosen]
        papers = {p.id: p for p in session.scalars(select(Paper).where(Paper.id.in_(wanted)))}
    entries = [(papers[p.paper_id], p) for p in chosen if p.paper_id in papers]
    slot = current_slot(sub.frequency, sub.weekday, sub.send_hour, sub.timezone, now)
    # an empty digest is previewed as the note it would be with digest.send_empty on
    shown = config if entries else config.replace(digest__send_empty=True)
    rendered = render_digest(sub, entries, period=slot.period, config=shown, now=now)
    assert rendered is not None
    rss, atom = subscriber_feeds(
        sub, [(paper, pick, now) for paper, pick in entries] + history, config=config
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
        files = {
            "digest.html": rendered.html.encode("utf-8"),
            "digest.txt": rendered.text.encode("utf-8"),
            "digest.eml": rendered.as_bytes(),
            "feed.rss": rss,
            "feed.atom": atom,
        }
        for name, data in files.items():
            write_atomic(out / name, data)
    except OSError as exc:
        raise RenderError(
            f"cannot write the preview: {exc.strerror}",
            file=out,
            hint="Pick another folder with --out.",
        ) from None
    for name in files:
        click.echo(str(out / name))
    if entries:
        note = f"{len(entries)} papers; subject: {rendered.subject}"
    else:
        note = "no new papers: no digest would be sent (digest.send_empty is off)"
        if config["digest.send_empty"]:
            note = "no new papers: the 'nothing new' note would be sent"
    click.echo(f"Preview of {sub.email}'s digest for {slot.period}: {note}.", err=True)
    if throwaway:
        click.echo(
            "Note: no secret key is configured (DIGESTBOT_SECRET_KEY), so the preview's links "
            "are signed with a throwaway key and will not work on the site.",
            err=True,
        )


@click.command("feeds")
@common_options
@pass_app
def feeds(app: App) -> None:
    """Write every feed reader's RSS and Atom files and the public new.rss/new.atom.

    Files go to digest.feeds_dir, named by each reader's feed token; readers who left or
    switched to email only lose theirs.

    \b
    Example:
      digestbot feeds --db /var/lib/digestbot/digestbot.db
    """
    from ..render.feeds import write_feeds

    config = app.config
    with progress_bars(app) as bars:
        count = write_feeds(app.store(), config, progress=bars.stage("feeds"))
    folder = config.path("digest.feeds_dir")
    noun = "reader" if count == 1 else "readers"
    click.echo(f"Wrote feeds for {count} {noun} and the public feed in {folder}.")


COMMANDS = [preview, feeds]
