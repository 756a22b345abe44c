"""The loop's proof: a DPO round and a PPO round on the tiny model, judged on held-out prompts by a rule with no
length term; `--set rounds=3` iterates (each round samples from the previous round's policy).

    python bench/loop.py                       # both methods, preset demo, a fresh database in a temp folder
    python bench/loop.py --methods dpo --set rounds=3 --out /tmp/loopbench
    python bench/loop.py --methods dpo,ppo,rloo,grpo --seeds 0,1,2   # each method once per seed

Targets (issue 17), on the tiny model (pre-trained at build time) and a CPU, each round in under 10 minutes:
  every round: the new adapter's mean answer length is within 0.75-1.33x of its parent's (LENGTH_BAND), and of
    the loop's start from round 2 on
  dpo: the new adapter beats its parent (round 1) or the loop's start (later rounds) on held-out prompts with
    win rate >= 0.70 and a 95% CI lower bound > 0.5
  ppo: mean rule reward of the new adapter's answers on held-out prompts > its parent's (the start's, later)

The baseline is the parent (the base model in round 1), measured in the same run on the same held-out prompts:
the win rate is against it, and the reward and length ratios compare the two. Rounds after the first are also
judged against the loop's start (`arena_vs_start`). Prints one line per round and PASS/FAIL, writes
bench-loop.json into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default=None, help="model folder (default: build the tiny model in --out)")
    ap.add_argument("--methods", default="dpo,ppo", help="comma-separated: dpo, ppo, rloo, grpo")
    ap.add_argument("--seeds", default="0", help="comma-separated loop seeds; each method runs once per seed")
    ap.add_argument("--out", default=None, help="folder for the database, runs and reports (default: a temp dir)")
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a LoopConfig field")
    args = ap.parse_args()

    from db.store import Store
    from serving.loop import PRESETS, Loop, LoopConfig

    out = Path(args.out or tempfile.mkdtemp(prefix="preflab-loop-bench-")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ["PREFLAB_HOME"] = str(out / "home")
    base = args.base
    if base is None:
        from serving.engines.tiny_model import build_tiny_model

        base = str(build_tiny_model(out / "tiny"))
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value) if value[:1].isdigit() or value[:1] in "-[{" else value
    results, ok = {}, True
    runs = [(m, int(seed)) for seed in args.seeds.split(",") for m in args.methods.split(",")]
    for method, seed in runs:
        tag = method if len(runs) == len(args.methods.split(",")) else f"{method}-seed{seed}"
        store = Store.open(out / f"{tag}.duckdb")
        values = {
            **PRESETS[args.preset],
            **overrides,
            "seed": seed,
            "method": method,
            "name": f"bench-{tag}",
            "out_dir": str(out / f"report-{tag}"),
        }
        t0 = time.perf_counter()
        summary = Loop(
            store,
            LoopConfig(base_model=base, **values),
            progress=lambda s, m=method: print(f"  [{m}] {s.step}: {s.detail}", file=sys.stderr),
        ).run()
        seconds = time.perf_counter() - t0
        store.close()
        rounds, passed = [], seconds < 600 * len(summary["rounds"])
        for rnd in summary["rounds"]:
            line, round_passed = _round_line(tag, method, rnd)
            print(line, flush=True)
            passed = passed and round_passed
            rounds.append(
                {
                    "round": rnd["round"],
                    "tally": rnd["arena"]["tally"],
                    "mean_reward": rnd["arena"]["mean_reward"],
                    "style_controlled": rnd["arena"]["style_controlled"],
                    "vs_start": (rnd.get("arena_vs_start") or {}).get("tally"),
                    "vs_start_mean_reward": (rnd.get("arena_vs_start") or {}).get("mean_reward"),
                    "snapshot_mean_length": rnd["snapshot"].get("mean_length"),
                    "reward_model": ((rnd["training"].get("reward_model") or {}).get("final") or {}).get(
                        "reward_eval_accuracy"
                    ),
                    "passed": round_passed,
                    "train_seconds": rnd["training"]["seconds"],
                    "sampling_seconds": rnd["sampling"]["seconds"],
                    "snapshot_rows": rnd["snapshot"]["rows"],
                }
            )
        ok = ok and passed
        last = summary["rounds"][-1]["arena"]
        results[tag] = {
            "seconds": seconds,
            "tally": last["tally"],  # the last round against its parent (bench-loop.json's old fields)
            "mean_reward": last["mean_reward"],
            "rounds": rounds,
            "passed": passed,
            "seed": seed,
            "report": str(out / f"report-{tag}" / "report.md"),
        }
        print(f"{tag}: {len(rounds)} round(s) in {seconds:.0f}s {'PASS' if passed else 'FAIL'}", flush=True)
    (out / "bench-loop.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(f"details: {out / 'bench-loop.json'}")
    return 0 if ok else 1


LENGTH_BAND = (0.75, 1.33)  # the new adapter's mean answer length over its parent's


def _in_band(arena: dict) -> tuple[float, bool]:
    ml = arena["mean_reward"]["mean_length"]
    ratio = ml["child"] / ml["parent"] if ml["parent"] else float("inf")
    return ratio, LENGTH_BAND[0] <= ratio <= LENGTH_BAND[1]


def _meets(method: str, arena: dict) -> bool:
    t, m = arena["tally"], arena["mean_reward"]
    if method == "dpo":
        return (t["win_rate"] or 0) >= 0.70 and t["ci_low"] > 0.5
    return m["child"] > m["parent"]


def _round_line(tag: str, method: str, rnd: dict) -> tuple[str, bool]:
    """One printed line for a round, and whether it meets its method's target inside the length band: round 1
    against its parent (the start), later rounds against the loop's start (and in the band against both)."""
    arena, start = rnd["arena"], rnd.get("arena_vs_start")
    t, m = arena["tally"], arena["mean_reward"]
    ratio, in_band = _in_band(arena)
    passed = _meets(method, start or arena) and in_band
    wr = "n/a" if t["win_rate"] is None else f"{t['win_rate']:.3f}"
    line = (
        f"{tag} round {rnd['round']}: win rate {wr} vs parent (95% CI {t['ci_low']:.3f}-{t['ci_high']:.3f}; "
        f"{t['wins']}W/{t['losses']}L/{t['ties']}T), mean rule reward parent {m['parent']:.3f} -> "
        f"{m['child']:.3f} (delta {m['delta']:+.3f}), mean length {m['mean_length']['parent']:.1f} -> "
        f"{m['mean_length']['child']:.1f} chars (x{ratio:.2f}, band {'ok' if in_band else 'OUT'})"
    )
    if start:
        ts, ms = start["tally"], start["mean_reward"]
        start_ratio, start_band = _in_band(start)
        passed = passed and start_band
        line += (
            f"; vs start: win rate {ts['win_rate'] or 0:.3f} (95% CI {ts['ci_low']:.3f}-{ts['ci_high']:.3f}), "
            f"mean rule reward {ms['parent']:.3f} -> {ms['child']:.3f}, length x{start_ratio:.2f}"
        )
    line += (
        f"; sampling {rnd['sampling']['seconds']:.0f}s, training {rnd['training']['seconds']:.0f}s "
        f"{'PASS' if passed else 'FAIL'}"
    )
    return line, passed


if __name__ == "__main__":
    sys.exit(main())
