"""`preflab export` and `preflab stats`: training data out, counts and agreement on screen.

    preflab export --format trl --out data/prefs.jsonl --dataset oasst-demo --split test=0.1 --seed 0
    preflab stats --dataset oasst-demo

Formats and the consensus method: docs/formats.md.
"""

from __future__ import annotations

import json

import click

from db.consensus import SOURCES
from db.export.config import FORMATS
from serving.cli.options import export_filter_options
from serving.cli.remote import server_url
from serving.cli.root import open_store


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _table(rows: list[list], header: list[str]) -> str:
    cells = [header, *[[_fmt(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def register(cli: click.Group) -> None:

    @cli.command("export")
    @click.option("--format", "fmt", required=True, type=click.Choice(list(FORMATS)), help="Export format.")
    @click.option(
        "--out",
        required=True,
        type=click.Path(dir_okay=False),
        help="Output file (with --split: OUT_train.EXT and OUT_test.EXT).",
    )
    @export_filter_options()
    @click.pass_context
    def export_cmd(ctx, fmt, out, **filters):
        """Export pairs, SFT data or examples as training files and print the snapshot id."""
        from db.export.config import ExportConfig

        cfg = ExportConfig(format=fmt, **filters)  # checked here, whether the server exports (remote) or we do
        url = server_url(ctx)
        if url:  # a server holds the database: it exports, we receive the file(s) (serving/cli/remote.py)
            from serving.cli import remote

            r = remote.export(url, fmt, out, **cfg.filters())
            click.echo(f"exported {fmt} via {url}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in r["counts"].items()))
            for path in r["paths"]:
                click.echo(f"  {path}")
            click.echo(f"snapshot {r['snapshot_id']}")
            return
        from db.export import export

        result = export(open_store(ctx), cfg, out)
        counts = ", ".join(f"{k} {_fmt(v)}" for k, v in result.counts.items())
        click.echo(f"exported {fmt}: {counts}")
        for role, path in result.paths.items():
            click.echo(f"  {role}: {path}")
        if not any(v for k, v in result.counts.items() if k in ("pairs", "examples", "feedback")):
            click.echo("warning: nothing matched; check --dataset, --source and the filters", err=True)
        click.echo(f"snapshot {result.snapshot_id}  ({result.snapshot_path})")

    @cli.command("stats")
    @click.option("--dataset", default=None, help="Only this dataset (default: all).")
    @click.option(
        "--source",
        default="all",
        show_default=True,
        type=click.Choice(list(SOURCES)),
        help="Which rankings count for consensus and agreement.",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
    @click.pass_context
    def stats_cmd(ctx, dataset, source, as_json):
        """Counts (prompts, answers, rankings, pairs, feedback, ratings, annotators) and annotator agreement."""
        from db.agreement import dataset_stats

        url = server_url(ctx)
        if url:  # a server holds the database: ask it (serving/cli/remote.py)
            from serving.cli import remote

            stats = remote.stats(url, dataset=dataset, source=source)
        else:
            stats = dataset_stats(open_store(ctx), dataset, source=source)
        if as_json:
            click.echo(json.dumps(stats, ensure_ascii=False, indent=2))
            return
        c, a = stats["counts"], stats["agreement"]
        click.echo(f"dataset: {dataset or 'all'}   source: {source}\n")
        rows = [
            ["prompts", c["prompts"]],
            ["answers", c["generations"]],
            ["  reference answers", c["reference_answers"]],
            ["  empty answers", c["empty_answers"]],
            ["rankings", c["rankings"]],
            *[[f"  {s}", c[s]] for s in ("submitted", "skipped", "flagged")],
            ["pairs (non-tie)", c["pairs"]],
            ["ties", c["ties"]],
            ["consensus pairs", c["consensus_pairs"]],
            ["annotators", c["annotators"]],
            ["prompts ranked 2+ times", c["prompts_with_overlap"]],
            ["feedback (thumbs)", c["feedback"]],
            ["  desirable (up)", c["feedback_up"]],
            ["  undesirable (down)", c["feedback_down"]],
            ["labelled examples", c["examples"]],
            *[[f"ratings: {aspect}", n] for aspect, n in stats.get("ratings_by_aspect", {}).items()],
        ]
        click.echo(_table(rows, ["count", "value"]) + "\n")
        rows = [
            ["Kendall tau-b, mean over pairs of rankings", a["kendall_tau"]],
            ["Kendall W, mean over prompts", a["kendall_w"]],
            ["Krippendorff alpha (ordinal)", a["krippendorff_alpha"]],
            ["pair agreement with the majority", a["pair_agreement"]],
        ]
        click.echo(_table(rows, ["agreement", "value"]))
        per_aspect = stats.get("aspect_agreement") or {}
        if per_aspect:  # interval alpha over answers rated by two or more people
            rows = [[name, v["alpha"], v["ratings"], v["answers"]] for name, v in per_aspect.items()]
            click.echo("\n" + _table(rows, ["aspect", "Krippendorff alpha (interval)", "ratings", "answers"]))
        if a["per_annotator"]:
            rows = [
                [
                    p["annotator"],
                    p["rankings"],
                    p["prompts_with_overlap"],
                    p["tau_b_vs_consensus"],
                    p["tau_b_vs_others"],
                ]
                for p in a["per_annotator"]
            ]
            click.echo(
                "\n" + _table(rows, ["annotator", "rankings", "overlap", "tau-b vs consensus", "tau-b vs others"])
            )
        if a["prompts_with_overlap"] == 0:
            click.echo("\n(agreement needs prompts ranked by two or more annotators)")
