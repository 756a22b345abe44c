"""CLI: `preflab arena leaderboard`: ratings from the blind A/B arena's votes.

    preflab arena leaderboard --exclude-flagged
    preflab arena leaderboard --source all --json

These commands open the database file: run them while no server holds it.
"""

from __future__ import annotations

import json

import click

from serving.cli.root import open_store


def register(cli: click.Group) -> None:
    @cli.group("arena")
    def arena_group() -> None:
        """The blind A/B arena: ratings from votes."""

    @arena_group.command("leaderboard")
    @click.option("--exclude-flagged", is_flag=True, help="Leave out battles where an answer named a model.")
    @click.option(
        "--rounds",
        default=1000,
        show_default=True,
        type=click.IntRange(0, 100_000),
        help="Bootstrap rounds for the 95% intervals.",
    )
    @click.option(
        "--source",
        type=click.Choice(["human", "synthetic", "all"]),
        default="human",
        show_default=True,
        help="Whose votes: people's, the loop's rule-based judge's, or both.",
    )
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def arena_leaderboard(ctx, exclude_flagged, rounds, source, as_json) -> None:
        """Bradley-Terry ratings with 95% bootstrap intervals, online Elo, and vote counts."""
        from serving.arena.battles import leaderboard

        board = leaderboard(open_store(ctx), exclude_flagged=exclude_flagged, bootstrap_rounds=rounds, source=source)
        if as_json:
            click.echo(json.dumps(board, ensure_ascii=False))
            return
        flagged = f"{board['flagged']} flagged{', left out' if exclude_flagged else ''}"
        click.echo(f"{board['n_votes']} votes ({source}; {flagged})")
        click.echo(f"{'rank':>4}  {'model':<24} {'rating':>8} {'95% CI':>17} {'elo':>8} {'votes':>6}  W/L/T")
        for r in board["rows"]:
            ci = f"{r['ci_low']:.0f}..{r['ci_high']:.0f}" if r["ci_low"] is not None else "-"
            click.echo(
                f"{r['rank']:>4}  {r['model']:<24} {r['rating']:>8.1f} {ci:>17} {r['elo']:>8.1f} "
                f"{r['votes']:>6}  {r['wins']}/{r['losses']}/{r['ties']}"
            )
