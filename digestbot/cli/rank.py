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
@click.option(
    "--explain",
    metavar="PAPER_ID",
    help="Show every part of this paper's score for the profile instead of the ranking.",
)
@click.option("--json", "as_json", is_flag=True, help='Print [{"id", "title", "score", "why"}].')
@common_options
@pass_app
def rank_command(
    app: App,
    keywords: str,
    liked: tuple[str, ...],
    disliked: tuple[str, ...],
    top: int,
    explain: str | None,
    as_json: bool,
) -> None:
    """Rank the store's papers for KEYWORDS and liked papers, with the reason for each.

    \b
    Example:
      digestbot rank -k "sparse autoencoders, mechanistic interpretability" --top 5
      digestbot rank -k "contrastive learning" --explain 2501.01234
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
    if explain is not None:
        from ..scoring.context import CONTEXT_SIMILARITY
        from ..scoring.explain import explain as explain_score  # scikit-learn: only when asked

        found = explain_score(
            store, explain, keywords=keywords, liked=liked, disliked=disliked, config=app.config
        )
        if as_json:
            print_json(found.as_dict())
            return
        click.echo(f"{found.title}  [{found.paper_id}]")
        place = f"#{found.rank}" if found.rank else "not picked"
        weighed = f" x context {found.context:.4f}" if found.context != 1 else ""
        click.echo(
            f"score {found.score:.4f} = similarity {found.similarity:.4f}{weighed}"
            f" + boosts {found.boost:.4f}  ({place})"
        )
        for part in found.parts:
            click.echo(f"  {part.name:<9} {part.contribution:+.4f}")
            for term, mine, theirs, product in part.terms:
                click.echo(f"      {term:<28} {mine:.4f} x {theirs:.4f} = {product:+.4f}")
        if found.semantic_z is not None:
            click.echo(
                f"      embedding similarity z-score {found.semantic_z:+.4f} (scoring.semantic)"
            )
        click.echo(f"  allowed: {found.why_allowed}")
        if found.context_paper is not None:
            click.echo(
                f"  context: {found.context:.4f}, the paper of another keyword most like it is "
                f"{found.context_similarity:.4f} similar (full weight from {CONTEXT_SIMILARITY}): "
                f"{found.context_paper}"
            )
        for typed, used in found.respelled:
            click.echo(f"  matched '{used}' for '{typed}'")
        if found.liked_similarity is not None:
            click.echo(f"  nearest liked paper: {found.liked_similarity:.4f} similar")
        return
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
        why.extend(f"matched '{used}' for '{typed}'" for typed, used in p.respelled)
        if p.similar_title:
            why.append(f"like '{p.similar_title}'")
        if p.for_meaning:
            why.append("picked for meaning (semantic), no keyword in it")
        if why:
            click.echo("       " + "; ".join(why))


COMMANDS = [rank_command]
