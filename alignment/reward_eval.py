"""Reward-model evaluation, RewardBench-style: pairwise accuracy on held-out pairs, by category and by how much the
annotators agreed, and the calibration of the margin.

    from alignment.reward_eval import evaluate_reward
    report = evaluate_reward("runs/reward-3/adapter", "exports/prefs.parquet", eval_fraction=0.1, seed=0)
    report["accuracy"], report["by_category"], report["by_agreement"], report["calibration"]

A pair is right when the model scores the chosen answer above the rejected one (equal scores count half). Pairs are
the rows of a preference snapshot (`trl`, `trl-messages` or `parquet`), rendered as RewardTrainer renders them
(alignment.data.rows_for_stage): conversational rows through the tokenizer's chat template, plain rows as prompt +
answer. With `eval_fraction` the held-out split is the one the reward run trained without (the same
`train_test_split` permutation over the same rows and seed); without it every row is evaluated.

Breakdowns where the snapshot has the columns (the `parquet` export has them all): `by_category` over `category`,
else `dataset`; `by_agreement` over the consensus `agreement` in buckets [0.5, 0.75), [0.75, 1.0), 1.0, with the
number of votes; `calibration` splits the pairs into quintiles of |margin| (the score difference) and gives each
bin's accuracy: a calibrated model is right more often where its margin is larger.
"""

from __future__ import annotations

import math
from pathlib import Path

from alignment.data import read_rows, rows_for_stage
from alignment.errors import DataError

AGREEMENT_BUCKETS = ((0.5, 0.75, "0.50-0.75"), (0.75, 1.0, "0.75-0.99"), (1.0, 1.01, "1.00"))


def held_out(rows: list, eval_fraction: float, seed: int) -> list[int]:
    """Indices of the held-out rows: the test side of `datasets`' train_test_split, as load_dataset_for draws it."""
    if not eval_fraction:
        return list(range(len(rows)))
    if len(rows) < 4:
        raise DataError(f"{len(rows)} pairs are too few to hold any out (at least 4)")
    from datasets import Dataset

    split = Dataset.from_dict({"i": list(range(len(rows)))}).train_test_split(test_size=eval_fraction, seed=seed)
    return sorted(split["test"]["i"])


def _texts(tok, row: dict) -> tuple[str, str]:
    prompt = row.get("prompt")

    def render(answer):
        if isinstance(answer, list):  # conversational
            msgs = [*(prompt if isinstance(prompt, list) else []), *answer]
            if getattr(tok, "chat_template", None):
                return tok.apply_chat_template(msgs, tokenize=False)
            return "\n".join(m["content"] for m in msgs)
        return (prompt if isinstance(prompt, str) else "") + answer

    return render(row["chosen"]), render(row["rejected"])


def score_pairs(model, tok, rows: list[dict], *, batch_size: int = 8, max_length: int = 1024) -> list[float]:
    """Score difference (chosen - rejected) of each pair."""
    import torch

    texts = [t for row in rows for t in _texts(tok, row)]
    scores: list[float] = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            batch = texts[i : i + batch_size]
            enc = tok(batch, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
            scores.extend(model(**enc).logits[:, 0].float().tolist())
    return [scores[2 * i] - scores[2 * i + 1] for i in range(len(rows))]


def _acc(margins: list[float]) -> float | None:
    if not margins:
        return None
    return sum(1.0 if m > 0 else 0.5 if m == 0 else 0.0 for m in margins) / len(margins)


def summarize(margins: list[float], meta: list[dict]) -> dict:
    """Accuracy overall, by category and agreement bucket, and the margin's calibration, from per-pair margins
    and each pair's snapshot row (for its category and agreement)."""
    out = {"pairs": len(margins), "accuracy": _acc(margins), "mean_margin": None}
    if margins:
        out["mean_margin"] = sum(margins) / len(margins)
    cats: dict[str, list[float]] = {}
    for m, row in zip(margins, meta, strict=True):
        cat = row.get("category") or row.get("dataset")
        if cat is not None:
            cats.setdefault(str(cat), []).append(m)
    out["by_category"] = {c: {"pairs": len(ms), "accuracy": _acc(ms)} for c, ms in sorted(cats.items())}
    buckets: dict[str, list[float]] = {}
    for m, row in zip(margins, meta, strict=True):
        agreement = row.get("agreement")
        if agreement is None or (isinstance(agreement, float) and math.isnan(agreement)):
            continue
        for lo, hi, name in AGREEMENT_BUCKETS:
            if lo <= agreement < hi:
                buckets.setdefault(name, []).append(m)
    out["by_agreement"] = {
        name: {"pairs": len(buckets[name]), "accuracy": _acc(buckets[name])}
        for *_, name in AGREEMENT_BUCKETS
        if name in buckets
    }
    order = sorted(range(len(margins)), key=lambda i: abs(margins[i]))
    bins = []
    n_bins = min(5, len(order))
    for b in range(n_bins):
        idx = order[b * len(order) // n_bins : (b + 1) * len(order) // n_bins]
        if idx:
            ms = [margins[i] for i in idx]
            bins.append(
                {
                    "abs_margin_low": abs(ms[0]),
                    "abs_margin_high": abs(ms[-1]),
                    "pairs": len(ms),
                    "accuracy": _acc(ms),
                }
            )
    out["calibration"] = bins
    return out


def evaluate_reward(
    model_path: str | Path,
    data: str | Path,
    *,
    eval_fraction: float = 0.0,
    seed: int = 0,
    max_samples: int | None = None,
    max_pairs: int | None = None,
    batch_size: int = 8,
    model=None,
    tokenizer=None,
) -> dict:
    """Evaluate a reward model (an adapter folder of a reward run, or a full model) on a snapshot's pairs; see the
    module docstring. `max_samples`: the reward run's own cap (rows kept before the split, as it kept them);
    `max_pairs`: evaluate at most this many held-out pairs. `model`/`tokenizer`: an already loaded model."""
    from alignment.models import adapter_meta, load_reward_model, load_tokenizer

    raw = read_rows(data)
    rows = rows_for_stage("reward", raw, source=str(data))
    if max_samples:
        raw, rows = raw[:max_samples], rows[:max_samples]
    idx = held_out(rows, eval_fraction, seed)
    if max_pairs:
        idx = idx[:max_pairs]
    if tokenizer is None:
        base = adapter_meta(model_path).get("base") if (Path(model_path) / "adapter_config.json").exists() else None
        tokenizer = load_tokenizer(base or str(model_path))
    if model is None:
        model = load_reward_model(str(model_path), pad_token_id=tokenizer.pad_token_id)
    margins = score_pairs(model, tokenizer, [rows[i] for i in idx], batch_size=batch_size)
    report = summarize(margins, [raw[i] for i in idx])
    report.update(data=str(data), eval_fraction=eval_fraction, seed=seed)
    return report


def record(run_dir: str | Path, report: dict, step: int) -> dict:
    """Keep a reward run's evaluation: RUN_DIR/reward_eval.json in full, and its headline numbers in the run's
    metrics (so the Training tab and the models table show them). Returns the flat metrics added."""
    import json

    from alignment.runs import append_metrics

    flat = {"reward_eval_accuracy": report["accuracy"], "reward_eval_pairs": report["pairs"]}
    for name, bucket in report["by_agreement"].items():
        flat[f"reward_eval_accuracy_agreement_{name}"] = bucket["accuracy"]
    Path(run_dir, "reward_eval.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", "utf-8")
    append_metrics(run_dir, {"step": step, "stage": "reward", **{k: v for k, v in flat.items() if v is not None}})
    return flat
