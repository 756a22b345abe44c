"""`preflab eval reward`: a reward model's pairwise accuracy on held-out pairs (alignment/reward_eval.py).

preflab eval reward --model reward-3 --data exports/prefs.parquet --eval-fraction 0.1 --seed 0
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from serving.cli.root import open_store


def register(cli: click.Group) -> None:
    @cli.group("eval")
    def eval_group() -> None:
        """Evaluate trained models."""

    @eval_group.command("reward")
    @click.option("--model", "model", required=True, help="A registered reward model's name, or its folder.")
    @click.option(
        "--data",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="A preference snapshot (trl, trl-messages or parquet export).",
    )
    @click.option(
        "--eval-fraction",
        type=click.FloatRange(0, 1, max_open=True),
        default=0.0,
        show_default=True,
        help="Evaluate the held-out split a reward run with this eval_fraction trained without (0: every pair).",
    )
    @click.option("--seed", type=int, default=0, show_default=True, help="The reward run's seed (for the split).")
    @click.option("--max-pairs", type=click.IntRange(min=1), default=None, help="Evaluate at most this many pairs.")
    @click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
    @click.pass_context
    def eval_reward(ctx, model, data, eval_fraction, seed, max_pairs, as_json) -> None:
        """Pairwise accuracy, by category and by annotator agreement, and the margin's calibration."""
        from alignment.reward_eval import evaluate_reward
        from db.models_registry import find_model

        path = Path(model)
        if not path.exists():
            found = find_model(open_store(ctx), model)
            if found is None or not found.get("path"):
                raise click.UsageError(f"no model named {model!r} and no such folder; see `preflab models list`")
            path = Path(found["path"])
        report = evaluate_reward(path, data, eval_fraction=eval_fraction, seed=seed, max_pairs=max_pairs)
        if as_json:
            click.echo(json.dumps(report, ensure_ascii=False, indent=2))
            return
        click.echo(f"{report['pairs']} pairs: accuracy {report['accuracy']:.3f}")
        for title, key in (("by category", "by_category"), ("by annotator agreement", "by_agreement")):
            if report[key]:
                click.echo(
                    title + ": " + ", ".join(f"{k} {v['accuracy']:.3f} ({v['pairs']})" for k, v in report[key].items())
                )
        click.echo(
            "calibration (|margin| bins, accuracy): "
            + ", ".join(
                f"{b['abs_margin_low']:.2f}-{b['abs_margin_high']:.2f} {b['accuracy']:.3f}"
                for b in report["calibration"]
            )
        )
