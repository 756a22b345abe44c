"""The loop's report: win rate with a Wilson interval, training curves as SVG plots, agreement, lineage.

    write_report(summary, out_dir)   # -> out_dir/report.md, report.json, round-<n>-curves.svg

`summary` is the dict serving.loop builds (parameters plus one entry per round). Plots are plain SVG written
here (matplotlib is not a dependency), so the report has no extra requirement and opens in any browser or
renders on a code host next to the markdown.
"""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path

# Metric names TRL logs, in the order we prefer to plot them (the first few present are drawn).
CURVE_KEYS = {
    "reward": [
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "reward",
        "rewards/mean",
        "objective/scores",
        "eval_accuracy",
        "accuracy",
    ],
    "loss": ["loss", "train_loss", "rewards/accuracies", "kl", "objective/kl"],
}
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def wilson_interval(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default); (0, 1) when n = 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # The exact interval always contains p (it is 1 at p = 1); rounding can land a hair inside, so clamp to p.
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def arena_tally(votes: list[dict], model: str) -> dict:
    """Wins, losses and ties of `model` in two-model votes ({model_a, model_b, winner}); win rate over decided."""
    wins = losses = ties = 0
    for v in votes:
        side = "a" if v["model_a"] == model else "b" if v["model_b"] == model else None
        if side is None:
            continue
        if v["winner"] in ("tie", "both_bad"):
            ties += 1
        elif v["winner"] == side:
            wins += 1
        else:
            losses += 1
    decided = wins + losses
    low, high = wilson_interval(wins, decided)
    return {
        "votes": wins + losses + ties,
        "wins": wins,
        "losses": losses,
        "ties": ties,
        "decided": decided,
        "win_rate": wins / decided if decided else None,
        "ci_low": low,
        "ci_high": high,
    }


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a run's metrics.jsonl (missing file: [])."""
    p = Path(path)
    if not p.exists():
        return []
    rows = []
    for line in p.read_text(encoding="utf-8").split("\n"):  # not splitlines(): U+2028 may sit in a string
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a crash: the rest is still worth plotting
    return rows


def curves(metrics: list[dict], keys: list[str], limit: int = 4) -> dict[str, list[tuple[float, float]]]:
    """{metric: [(step, value), ...]} for the first `limit` keys of `keys` present in the rows."""
    out: dict[str, list[tuple[float, float]]] = {}
    for key in keys:
        points = [
            (float(r.get("step", i)), float(r[key]))
            for i, r in enumerate(metrics)
            if isinstance(r.get(key), int | float) and math.isfinite(r[key])
        ]
        if points:
            out[key] = points
        if len(out) >= limit:
            break
    return out


def svg_plot(series: dict[str, list[tuple[float, float]]], title: str, *, width: int = 560, height: int = 300) -> str:
    """A line chart as an SVG document: axes with min/max labels, one coloured line per series, a legend."""
    left, right, top, bottom = 60, 150, 30, 40
    pts = [p for s in series.values() for p in s]
    if not pts:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="60"><text x="10" y="30">'
            f"{escape(title)}: no data</text></svg>"
        )
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pw, ph = width - left - right, height - top - bottom

    def sx(x):
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y):
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="11">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{left}" y="18" font-size="13">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="black"/>',
        f'<text x="{left - 5}" y="{top + 4}" text-anchor="end">{y1:.3g}</text>',
        f'<text x="{left - 5}" y="{top + ph}" text-anchor="end">{y0:.3g}</text>',
        f'<text x="{left}" y="{top + ph + 15}" text-anchor="middle">{x0:.0f}</text>',
        f'<text x="{left + pw}" y="{top + ph + 15}" text-anchor="middle">{x1:.0f}</text>',
        f'<text x="{left + pw / 2}" y="{top + ph + 30}" text-anchor="middle">step</text>',
    ]
    if y0 < 0 < y1:
        parts.append(
            f'<line x1="{left}" y1="{sy(0):.1f}" x2="{left + pw}" y2="{sy(0):.1f}" stroke="#bbb" '
            'stroke-dasharray="4 3"/>'
        )
    for i, (name, points) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
        ly = top + 12 + 16 * i
        parts.append(
            f'<line x1="{left + pw + 10}" y1="{ly - 4}" x2="{left + pw + 28}" y2="{ly - 4}" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
        parts.append(f'<text x="{left + pw + 32}" y="{ly}">{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _fmt(x, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _round_markdown(r: dict, out: Path) -> list[str]:
    n = r["round"]
    a, arena, lin = r.get("annotation", {}), r.get("arena", {}), r.get("lineage", {})
    tally = arena.get("tally", {})
    lines = [f"## Round {n} ({r.get('method', 'dpo')})", ""]
    if tally:
        ci = f"[{_fmt(tally.get('ci_low'))}, {_fmt(tally.get('ci_high'))}]"
        lines += [
            f"**Arena on {arena.get('prompts', '?')} held-out prompts**: `{lin.get('adapter')}` vs its "
            f"parent `{lin.get('parent')}`: win rate **{_fmt(tally.get('win_rate'))}** (95% Wilson CI {ci}); "
            f"{tally.get('wins')} wins, {tally.get('losses')} losses, {tally.get('ties')} ties "
            f"out of {tally.get('votes')} votes.",
            "",
        ]
    sc = arena.get("style_controlled") or {}
    if sc.get("win_rate") is not None:
        coef = ", ".join(f"{k} {v:+.2f}" for k, v in (sc.get("coefficients") or {}).items())
        lines += [
            f"Style-controlled (answer length and markdown held equal, as Chatbot Arena's style control): win "
            f"probability **{_fmt(sc['win_rate'])}** (95% bootstrap CI [{_fmt(sc.get('ci_low'))}, "
            f"{_fmt(sc.get('ci_high'))}]); style coefficients: {coef}. A raw win rate far above this one was won "
            "on style, not content.",
            "",
        ]
    rewards = arena.get("mean_reward", {})
    if rewards:
        lines += [
            "| held-out mean rule reward | parent | new adapter | change |",
            "|---|---|---|---|",
            f"| per answer | {_fmt(rewards.get('parent'))} | {_fmt(rewards.get('child'))} | "
            f"{_fmt(rewards.get('delta'))} |",
            "",
        ]
        if rewards.get("mean_length"):
            ml = rewards["mean_length"]
            lines += [
                f"Mean answer length (characters): parent {_fmt(ml.get('parent'), 1)}, "
                f"new {_fmt(ml.get('child'), 1)}.",
                "",
            ]
    if arena.get("leaderboard"):
        lines += ["| model | Bradley-Terry rating | 95% CI | votes |", "|---|---|---|---|"]
        for row in arena["leaderboard"]:
            lines.append(
                f"| {row['model']} | {_fmt(row.get('rating'), 1)} | [{_fmt(row.get('ci_low'), 1)}, "
                f"{_fmt(row.get('ci_high'), 1)}] | {row.get('votes')} |"
            )
        lines.append("")
    start = r.get("arena_vs_start") or {}
    if start.get("tally"):
        t = start["tally"]
        lines += [
            f"Against the loop's start `{start.get('parent')}`: win rate **{_fmt(t.get('win_rate'))}** (95% Wilson "
            f"CI [{_fmt(t.get('ci_low'))}, {_fmt(t.get('ci_high'))}]), {t.get('wins')} / {t.get('losses')} / "
            f"{t.get('ties')}; length ratio {_fmt(length_ratio(start), 2)}.",
            "",
        ]
    rm = (r.get("training") or {}).get("reward_model") or {}
    rm_final = rm.get("final") or {}
    if rm_final.get("reward_eval_accuracy") is not None:
        lines += [
            f"Reward model `{rm.get('adapter')}`: pairwise accuracy **{_fmt(rm_final['reward_eval_accuracy'])}** on "
            f"{rm_final.get('reward_eval_pairs')} held-out pairs of the snapshot (by agreement bucket and margin "
            f"calibration: `{Path(rm.get('run_dir', '.')) / 'reward_eval.json'}`).",
            "",
        ]
    snap_len = (r.get("snapshot") or {}).get("mean_length") or {}
    if snap_len:
        lines += [
            f"Pairs' mean length (characters): chosen {_fmt(snap_len.get('chosen'), 1)}, rejected "
            f"{_fmt(snap_len.get('rejected'), 1)}: how much length the data itself teaches.",
            "",
        ]
    s = r.get("sampling", {})
    lines += [
        "| step | figures |",
        "|---|---|",
        f"| sample | {s.get('prompts')} prompts x n={s.get('n')} from `{s.get('model')}` ({s.get('engine')}): "
        f"{s.get('generations')} answers, {s.get('seconds', 0):.1f}s |",
        f"| rank | {a.get('rankings')} rankings by {len(a.get('annotators', []))} synthetic annotators "
        f"(noise {r.get('noise')}) on {a.get('prompts')} prompts |",
        f"| pairs | {a.get('pairs')} pairs + {a.get('ties')} ties = {a.get('expected_pairs')} "
        f"(sum of C(K,2) over rankings) |",
        f"| snapshot | `{lin.get('snapshot_id')}`: {r.get('snapshot', {}).get('rows')} rows |",
        f"| train | run {lin.get('run_id')} ({r.get('training', {}).get('seconds', 0):.1f}s) -> adapter "
        f"`{lin.get('adapter')}` |",
        "",
    ]
    agreement = r.get("agreement") or {}
    if agreement:
        lines += [
            "Agreement between the synthetic annotators: "
            + ", ".join(f"{k} {_fmt(v)}" for k, v in agreement.items() if isinstance(v, int | float))
            + ".",
            "",
        ]
        per = agreement.get("tau_b_vs_consensus") or {}
        if per:
            lines += [
                "Kendall tau-b of each annotator with the consensus: "
                + ", ".join(f"{k} {_fmt(v)}" for k, v in per.items())
                + ".",
                "",
            ]
    lines += [
        f"Lineage: snapshot `{lin.get('snapshot_id')}` -> run {lin.get('run_id')} (`{lin.get('run_dir')}`) "
        f"-> adapter `{lin.get('adapter')}` (parent `{lin.get('parent')}`).",
        "",
    ]
    for kind, keys in CURVE_KEYS.items():
        series = curves(read_metrics(r.get("training", {}).get("metrics", "")), keys)
        if series:
            name = f"round-{n}-{kind}.svg"
            (out / name).write_text(svg_plot(series, f"round {n}: {kind} curves"), encoding="utf-8")
            lines += [f"![round {n} {kind} curves]({name})", ""]
    return lines


def length_ratio(arena: dict) -> float | None:
    """The new adapter's mean answer length over its opponent's in one arena (None without both)."""
    ml = (arena.get("mean_reward") or {}).get("mean_length") or {}
    return ml["child"] / ml["parent"] if ml.get("child") is not None and ml.get("parent") else None


def progress_table(rounds: list[dict]) -> list[str]:
    """One row per round: the new adapter against the loop's starting policy (round 1: its parent is it), with
    the Wilson interval, the style-controlled win probability and the length ratio; [] without arenas."""
    rows = []
    for r in rounds:
        arena = r.get("arena_vs_start") or r.get("arena") or {}
        t, sc = arena.get("tally") or {}, arena.get("style_controlled") or {}
        if not t:
            continue
        rows.append(
            f"| {r['round']} | `{(r.get('lineage') or {}).get('adapter')}` | **{_fmt(t.get('win_rate'))}** "
            f"[{_fmt(t.get('ci_low'))}, {_fmt(t.get('ci_high'))}] | {t.get('wins')} / {t.get('losses')} / "
            f"{t.get('ties')} | {_fmt(sc.get('win_rate'))} | {_fmt(length_ratio(arena), 2)} |"
        )
    if not rows:
        return []
    return [
        "## Every round against the loop's start",
        "",
        "| round | adapter | win rate (95% CI) | W / L / T | style-controlled | length ratio |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "Length ratio: the adapter's mean answer length over the starting policy's, on the same held-out prompts.",
        "",
    ]


def write_report(summary: dict, out_dir: str | Path) -> Path:
    """Write report.md (+ SVG plots + report.json with every number) into out_dir; returns report.md's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    p = summary.get("config", {})
    lines = [
        "# PrefLab loop report",
        "",
        f"Base model `{p.get('base_model')}`, method {p.get('method')}, {p.get('rounds')} round(s); "
        f"{p.get('train_prompts')} training prompts and {p.get('heldout_prompts')} held-out prompts; "
        f"total {summary.get('seconds', 0):.0f}s.",
        "",
        "The synthetic annotators and the arena judge apply the same rule (serving/loop/synthetic.py): the first "
        "4 words of an answer are judged, a real word scores 1, a made-up one 0, the requested keyword 2, and a "
        "missing word 0.4 (the base model's share of real words); there is no length term.",
        "",
    ]
    lines += progress_table(summary.get("rounds", []))
    for r in summary.get("rounds", []):
        lines += _round_markdown(r, out)
    lines += ["## Parameters", "", "```json", json.dumps(p, ensure_ascii=False, indent=2), "```", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
