"""The loop's proof: one DPO round and one PPO round on the tiny model, judged on held-out prompts.

    python bench/loop.py                       # both methods, preset demo, a fresh database in a temp folder
    python bench/loop.py --methods dpo --out /tmp/loopbench

Targets (issue 7), on the tiny model (pre-trained at build time) and a CPU, each round in under 10 minutes:
  dpo: the new adapter beats its parent on held-out prompts with win rate >= 0.70 and a 95% CI lower bound > 0.5
  ppo: mean rule reward of the new adapter's answers on held-out prompts > the parent's

The baseline is the parent (the base model), measured in the same run on the same held-out prompts: the
win rate is against it, and the reward ratio compares the two. Prints one line per method and PASS/FAIL,
writes bench-loop.json into --out.
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
    ap.add_argument("--methods", default="dpo,ppo")
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
    for method in args.methods.split(","):
        store = Store.open(out / f"{method}.duckdb")
        values = {
            **PRESETS[args.preset],
            **overrides,
            "method": method,
            "name": f"bench-{method}",
            "out_dir": str(out / f"report-{method}"),
        }
        t0 = time.perf_counter()
        summary = Loop(
            store,
            LoopConfig(base_model=base, **values),
            progress=lambda s, m=method: print(f"  [{m}] {s.step}: {s.detail}", file=sys.stderr),
        ).run()
        seconds = time.perf_counter() - t0
        store.close()
        rnd = summary["rounds"][-1]
        t, m = rnd["arena"]["tally"], rnd["arena"]["mean_reward"]
        if method == "dpo":
            passed = (t["win_rate"] or 0) >= 0.70 and t["ci_low"] > 0.5
        else:
            passed = m["child"] > m["parent"]
        passed = passed and seconds < 600
        ok = ok and passed
        results[method] = {
            "seconds": seconds,
            "tally": t,
            "mean_reward": m,
            "passed": passed,
            "train_seconds": rnd["training"]["seconds"],
            "sampling_seconds": rnd["sampling"]["seconds"],
            "snapshot_rows": rnd["snapshot"]["rows"],
            "report": str(out / f"report-{method}" / "report.md"),
        }
        wr = "n/a" if t["win_rate"] is None else f"{t['win_rate']:.3f}"
        print(
            f"{method}: win rate {wr} vs parent (95% CI {t['ci_low']:.3f}-{t['ci_high']:.3f}; "
            f"{t['wins']}W/{t['losses']}L/{t['ties']}T), mean rule reward parent {m['parent']:.3f} -> "
            f"{m['child']:.3f} (delta {m['delta']:+.3f}), mean length {m['mean_length']['parent']:.1f} -> "
            f"{m['mean_length']['child']:.1f} chars; {seconds:.0f}s total (sampling "
            f"{rnd['sampling']['seconds']:.0f}s, training {rnd['training']['seconds']:.0f}s) "
            f"{'PASS' if passed else 'FAIL'}"
        )
    (out / "bench-loop.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(f"details: {out / 'bench-loop.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
