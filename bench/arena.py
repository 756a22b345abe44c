"""Arena ratings benchmark: Bradley-Terry + 1,000 bootstrap rounds on 100,000 votes among 20 models.

    .venv/bin/python bench/arena.py [--votes 100000 --models 20 --rounds 1000 --baseline-rounds 10]

Target (issue 6): <= 5 s on this CPU. The baseline, measured in the same run, is the textbook way: resample
the votes themselves each round (rng.choice over 100k rows) and fit each round on its own with Hunter's MM
iterations; it runs `--baseline-rounds` rounds and is scaled to the full round count (said in the output).
Also checks that the vectorised fit recovers the true order of the synthetic models.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from serving.arena.ratings import RatingsConfig, leaderboard_from_arrays


def synthetic(n: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    true = np.linspace(-1.5, 1.5, k)
    a = rng.integers(0, k, n)
    b = (a + rng.integers(1, k, n)) % k
    p = 1 / (1 + np.exp(-(true[a] - true[b])))
    u = rng.random(n)
    s = np.where(u < 0.1, 0.5, np.where(rng.random(n) < p, 1.0, 0.0))
    return true, a, b, s


def mm_fit(k: int, a: np.ndarray, b: np.ndarray, s: np.ndarray, iters: int = 200, tol: float = 1e-8) -> np.ndarray:
    """Hunter (2004) MM for Bradley-Terry on one sample (ties half), the per-round baseline."""
    w = np.zeros((k, k))
    np.add.at(w, (a, b), s)
    np.add.at(w, (b, a), 1 - s)
    g = w + w.T
    p = np.ones(k)
    wins = w.sum(1) + 0.01
    for _ in range(iters):
        denom = (g / (p[:, None] + p[None, :])).sum(1) + 0.02 / (p + 1)
        new = wins / denom
        new /= np.exp(np.log(new).mean())
        if np.abs(np.log(new) - np.log(p)).max() < tol:
            p = new
            break
        p = new
    return np.log(p)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--votes", type=int, default=100_000)
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--baseline-rounds", type=int, default=10)
    args = ap.parse_args()
    true, a, b, s = synthetic(args.votes, args.models)
    names = [f"m{i:02d}" for i in range(args.models)]
    leaderboard_from_arrays(names, a[:1000], b[:1000], s[:1000], RatingsConfig(bootstrap_rounds=5))  # warm-up

    t0 = time.perf_counter()
    board = leaderboard_from_arrays(names, a, b, s, RatingsConfig(bootstrap_rounds=args.rounds))
    ours = time.perf_counter() - t0

    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    for _ in range(args.baseline_rounds):
        idx = rng.integers(0, args.votes, args.votes)
        mm_fit(args.models, a[idx], b[idx], s[idx])
    per_round = (time.perf_counter() - t0) / args.baseline_rounds
    baseline = per_round * args.rounds

    order_ok = [r["model"] for r in board.rows] == names[::-1]
    width = np.mean([r["ci_high"] - r["ci_low"] for r in board.rows])
    print(
        f"votes {args.votes:,}  models {args.models}  bootstrap rounds {args.rounds}  cores {os.cpu_count()}  "
        f"load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"vectorised BT + bootstrap (incl. Elo, counts, win-rate matrix): {ours:.2f} s  "
        f"(target <= 5 s: {'PASS' if ours <= 5 else 'FAIL'})"
    )
    print(
        f"baseline (resample votes + per-round MM fit): {per_round * 1000:.0f} ms/round x {args.rounds} = "
        f"{baseline:.1f} s (measured on {args.baseline_rounds} rounds)"
    )
    print(f"speed-up vs baseline: {baseline / ours:.1f}x")
    print(f"true order recovered: {order_ok}; mean 95% CI width {width:.1f} rating points")


if __name__ == "__main__":
    main()
