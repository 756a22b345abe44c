"""CLI: `preflab loop`, the closed loop in one command.

    preflab loop --base models/tiny --preset demo              # one DPO round; prints the report's path
    preflab loop --base models/tiny --method ppo --rounds 2

With a server holding the database (PREFLAB_URL, or `preflab up` running), `preflab loop` asks the server to
run it (POST /api/loop; sign in first with `preflab login`) and follows its progress.
"""

from __future__ import annotations

import json
import signal
import time

import click

from serving.cli.remote import server_url
from serving.cli.root import open_store


def _loop_values(preset: str, overrides: dict) -> dict:
    from serving.loop import PRESETS

    values = dict(PRESETS[preset]) if preset != "none" else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return values


def _headline(summary_rounds: list[dict]) -> list[str]:
    lines = []
    for r in summary_rounds:
        t, m = r["tally"] if "tally" in r else r["arena"]["tally"], r.get("mean_reward") or r["arena"]["mean_reward"]
        wr = "n/a" if t["win_rate"] is None else f"{t['win_rate']:.3f}"
        lines.append(
            f"round {r['round']}: {r['lineage']['adapter']} vs {r['lineage']['parent']}: win rate {wr} "
            f"(95% CI {t['ci_low']:.3f}-{t['ci_high']:.3f}; {t['wins']}W {t['losses']}L {t['ties']}T); "
            f"mean rule reward {m['parent']:.3f} -> {m['child']:.3f}; mean length "
            f"{m['mean_length']['parent']:.0f} -> {m['mean_length']['child']:.0f} chars"
        )
        start = r.get("arena_vs_start")
        if start:
            ts = start["tally"]
            wr = "n/a" if ts["win_rate"] is None else f"{ts['win_rate']:.3f}"
            lines.append(
                f"  vs the loop's start {start['parent']}: win rate {wr} "
                f"(95% CI {ts['ci_low']:.3f}-{ts['ci_high']:.3f}; {ts['wins']}W {ts['losses']}L {ts['ties']}T)"
            )
    return lines


def _remote_loop(url: str, values: dict, as_json: bool) -> None:
    import httpx

    from serving.cli import remote

    headers = {"Authorization": f"Bearer {remote.token()}"} if remote.token() else {}
    with httpx.Client(base_url=url, headers=headers, timeout=60.0) as client:
        r = client.post("/api/loop", json=values)
        remote._raise_for(r)
        loop_id, seen = r.json()["id"], 0
        click.echo(f"loop {loop_id} started on {url}", err=True)
        while True:
            time.sleep(2.0)
            r = client.get(f"/api/loop/{loop_id}")
            remote._raise_for(r)
            view = r.json()
            for h in view["history"][seen:]:
                click.echo(f"[round {h['round']}] {h['step']}: {h['detail']}", err=True)
            seen = len(view["history"])
            if view["status"] != "running":
                break
    if view["status"] != "finished":
        raise click.ClickException(f"loop {loop_id} {view['status']}: {view['error']}")
    if as_json:
        click.echo(json.dumps(view, ensure_ascii=False, indent=2))
        return
    for line in _headline(view.get("results", [])):
        click.echo(line)
    click.echo(f"report: {view['report']}")


def register(cli: click.Group) -> None:
    @cli.command("loop")
    @click.option("--base", "base_model", default="models/tiny", show_default=True, help="Base model folder.")
    @click.option(
        "--preset",
        type=click.Choice(["demo", "test", "none"]),
        default="demo",
        show_default=True,
        help="Tuned defaults (docs/loop.md); the options below override them.",
    )
    @click.option(
        "--method",
        type=click.Choice(["dpo", "ppo", "rloo", "grpo"]),
        default="dpo",
        show_default=True,
        help="dpo, or ppo / rloo / grpo: a reward model, then that method with it.",
    )
    @click.option("--rounds", type=click.IntRange(1), default=None, help="Rounds (each trains on the last).")
    @click.option("--parent", "parent_adapter", default=None, help="Adapter folder of the current policy.")
    @click.option("--train-prompts", type=click.IntRange(1), default=None, help="Training prompts per round.")
    @click.option("--heldout-prompts", type=click.IntRange(1), default=None, help="Held-out prompts for the arena.")
    @click.option("--n", type=click.IntRange(2, 16), default=None, help="Answers sampled per prompt.")
    @click.option("--max-tokens", type=click.IntRange(1), default=None, help="Tokens per sampled answer.")
    @click.option("--annotators", type=click.IntRange(1), default=None, help="Synthetic annotators per prompt.")
    @click.option(
        "--noise",
        type=click.FloatRange(0, 1),
        default=None,
        help="Probability an annotator swaps two neighbouring ranks.",
    )
    @click.option("--lr", "learning_rate", type=float, default=None, help="Learning rate (DPO).")
    @click.option("--epochs", type=float, default=None, help="Epochs over the snapshot (DPO, reward model).")
    @click.option("--max-steps", type=int, default=None, help="Stop training after this many steps (-1: epochs).")
    @click.option("--beta", type=float, default=None, help="DPO beta.")
    @click.option("--lora-r", type=click.IntRange(1), default=None, help="LoRA rank.")
    @click.option("--batch-size", type=click.IntRange(1), default=None, help="Training batch size.")
    @click.option(
        "--arena-turns",
        type=click.IntRange(1),
        default=None,
        help="Answers per model per held-out prompt (votes = held-out prompts x turns).",
    )
    @click.option(
        "--engine",
        "backend",
        type=click.Choice(["transformers", "vllm"]),
        default=None,
        help="Engine for sampling and the arena (default transformers: it serves LoRA on CPU).",
    )
    @click.option("--name", default=None, help="Name prefix of the datasets and adapters (default: loop).")
    @click.option("--out", "out_dir", default=None, help="Report folder (default: PREFLAB_HOME/loops/NAME-TIME).")
    @click.option("--seed", type=int, default=None)
    @click.option("--json", "as_json", is_flag=True, help="Print the whole summary as JSON.")
    @click.pass_context
    def loop(ctx: click.Context, preset: str, as_json: bool, **options) -> None:
        """Sample -> rank (synthetic annotators) -> pairs -> snapshot -> train -> arena -> report, in one command.

        The synthetic annotators and the arena judge prefer real words to made-up ones in an answer's first 4
        words, the requested keyword most, with no length term (serving/loop/synthetic.py). --rounds N iterates:
        each round samples from the previous round's adapter and is judged against its parent and the loop's
        start. The report (markdown + SVG plots + report.json) gives each round's win rate on held-out prompts
        with a 95% Wilson interval, the style-controlled win probability, answer lengths, the training curves
        (and the reward model's evaluation with --method ppo), the annotators' agreement and the lineage.
        """

        values = _loop_values(preset, options)
        url = server_url(ctx)
        if url:
            _remote_loop(url, values, as_json)
            return
        from serving.loop import Loop, LoopConfig

        store = open_store(ctx)
        cfg = LoopConfig(**values)

        def progress(state) -> None:
            click.echo(f"[round {state.round}] {state.step}: {state.detail}", err=True)

        def _sigterm(signum, frame):  # a plain SIGTERM would skip the clean-up (engine, training job)
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, _sigterm)
        try:
            summary = Loop(store, cfg, progress=progress).run()
        except KeyboardInterrupt:
            raise click.ClickException("interrupted: the engine and the training job were stopped") from None
        finally:
            signal.signal(signal.SIGTERM, previous)
        if as_json:
            click.echo(json.dumps(summary, ensure_ascii=False, indent=2, default=str))
            return
        for line in _headline(summary["rounds"]):
            click.echo(line)
        click.echo(f"report: {summary['out_dir']}/report.md")
