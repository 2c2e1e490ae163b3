"""`digestbot rank`: the store's papers ranked for an ad-hoc profile."""

from __future__ import annotations

import click

from . import App, common_options, pass_app, print_json


@click.command("rank")
@click.option(
    "--keywords", "-k", default="", help="Comma-separated phrases, as a subscriber types them."
)
@click.option("--liked", multiple=True, metavar="PAPER_ID", help="A paper to find more like.")
@click.option("--disliked", multiple=True, metavar="PAPER_ID", help="A paper to steer away from.")
@click.option("--top", "-n", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help='Print [{"id", "title", "score", "why"}].')
@common_options
@pass_app
def rank_command(
    app: App,
    keywords: str,
    liked: tuple[str, ...],
    disliked: tuple[str, ...],
    top: int,
    as_json: bool,
) -> None:
    """Rank the store's papers for KEYWORDS and liked papers, with the reason for each.

    \b
    Example:
      digestbot rank -k "sparse autoencoders, mechanistic interpretability" --top 5
    """
    from sqlalchemy import select

    from ..store import Paper

    if not keywords.strip() and not liked:
        raise click.UsageError(
            "give --keywords or --liked to rank by, e.g. "
            "digestbot rank --keywords 'sparse autoencoders, interpretability'"
        )
    from ..scoring.engine import rank_profile  # scikit-learn: only when ranking

    store = app.store()
    picks = rank_profile(
        store, keywords=keywords, liked=liked, disliked=disliked, top=top, config=app.config
    )
    ids = [p.paper_id for p in picks]
    with store.session() as session:
        titles = dict(session.execute(select(Paper.id, Paper.title).where(Paper.id.in_(ids))).all())
    if as_json:
        print_json(
            [
                {
                    "id": p.paper_id,
                    "title": titles.get(p.paper_id, ""),
                    # the precision of the text output; more digits only look meaningful
                    "score": round(float(p.score), 4),
                    "why": p.why(),
                }
                for p in picks
            ]
        )
        return
    if not picks:
        click.echo("No paper matches.")
        return
    for n, p in enumerate(picks, 1):
        click.echo(f"{n:>3}. {p.score:.3f}  {titles.get(p.paper_id, '')}  [{p.paper_id}]")
        why = []
        if p.matched:
            why.append("matches " + ", ".join(p.matched))
        if p.similar_title:
            why.append(f"like '{p.similar_title}'")
        if why:
            click.echo("       " + "; ".join(why))


COMMANDS = [rank_command]
