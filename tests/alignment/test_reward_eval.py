"""Reward-model evaluation (alignment/reward_eval.py): the numbers on a hand-made set, the held-out split matching
the reward run's, and a real reward run that records its evaluation; `preflab eval reward` prints it."""

from __future__ import annotations

import json

import pytest
import torch

from alignment.data import load_dataset_for
from alignment.job import prepare_run, run_job
from alignment.reward_eval import held_out, summarize
from tests.support.training import FAST, PAIRS, write_jsonl


def test_summary_numbers_on_a_hand_made_set():
    margins = [2.0, 1.0, -0.5, 0.0, 3.0, -2.5]
    meta = [
        {"dataset": "es", "agreement": 1.0},
        {"dataset": "es", "agreement": 0.6},
        {"dataset": "zh", "agreement": 0.6},
        {"dataset": "zh", "agreement": 0.8},
        {"dataset": "zh", "agreement": 1.0},
        {"category": "math 🧮", "dataset": "zh", "agreement": None},
    ]
    r = summarize(margins, meta)
    assert r["pairs"] == 6 and r["accuracy"] == pytest.approx((1 + 1 + 0 + 0.5 + 1 + 0) / 6)
    assert r["by_category"] == {
        "es": {"pairs": 2, "accuracy": 1.0},
        "math 🧮": {"pairs": 1, "accuracy": 0.0},
        "zh": {"pairs": 3, "accuracy": 0.5},
    }
    assert r["by_agreement"] == {
        "0.50-0.75": {"pairs": 2, "accuracy": 0.5},
        "0.75-0.99": {"pairs": 1, "accuracy": 0.5},
        "1.00": {"pairs": 2, "accuracy": 1.0},
    }
    # quintiles of |margin|: 0 | 0.5 | 1 | 2 | 2.5, 3 -> accuracy 0.5, 0, 1, 1, 0.5
    assert [b["accuracy"] for b in r["calibration"]] == [0.5, 0.0, 1.0, 1.0, 0.5]
    assert [b["pairs"] for b in r["calibration"]] == [1, 1, 1, 1, 2]


def test_held_out_is_the_split_the_reward_run_trained_without(tmp_path):
    rows = [{**p, "prompt": [{"role": "user", "content": f"{i} ¿qué? 你好"}]} for i, p in enumerate(PAIRS * 3)]
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    _, test = load_dataset_for("reward", data, eval_fraction=0.25, seed=7)
    idx = held_out(rows, 0.25, 7)
    assert [rows[i]["prompt"] for i in idx] == sorted(test["prompt"], key=lambda p: int(p[0]["content"].split()[0]))


def test_reward_run_records_its_evaluation_and_the_cli_prints_it(tmp_path, tiny_model_dir, run_cli):
    torch.set_num_threads(1)
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS * 2)
    run_dir = tmp_path / "reward"
    values = {**FAST, "base": str(tiny_model_dir), "data": str(data), "max_length": 48, "eval_fraction": 0.25}
    prepare_run("reward", run_dir, values=values)
    result = run_job(run_dir)
    assert result["status"] == "finished"
    report = json.loads((run_dir / "reward_eval.json").read_text(encoding="utf-8"))
    assert report["pairs"] == len(held_out(PAIRS * 2, 0.25, FAST.get("seed", 0)))
    assert 0.0 <= report["accuracy"] <= 1.0 and report["calibration"]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert any("reward_eval_accuracy" in m for m in metrics)
    out = run_cli(
        "eval", "reward", "--model", str(run_dir / "adapter"), "--data", str(data), "--eval-fraction", "0.25", "--json"
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["accuracy"] == pytest.approx(report["accuracy"])
