"""Training benchmark on the `small` model (~90M parameters): steps/s and peak memory per stage, and our
wrapper against a bare TRL script with the same settings.

    .venv/bin/python bench/train.py [--steps 6] [--repeats 2] [--threads 1] [--workdir /tmp/preflab-bench-train]

Each measurement runs in its own subprocess so its peak RSS (ru_maxrss) is its own. steps/s is TRL's
train_steps_per_second (the training loop only, model loading excluded) for both sides, so the ratio
compares like with like. Targets: DPO peak memory <= 1.2x SFT's (the reference is the adapter-disabled
model, not a copy); our steps/s >= 0.95x the bare script's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = (
    "the model answers each question with care and a short explanation of why the answer holds "
    "en español también y en 中文 以及 emoji 🙂 "
).split()


def make_data(workdir: Path, n: int = 32) -> dict[str, Path]:
    import random

    rng = random.Random(0)
    pairs, sft = [], []
    for i in range(n):
        prompt = [{"role": "user", "content": f"Question {i}: " + " ".join(rng.choices(WORDS, k=20))}]
        good = " ".join(rng.choices(WORDS, k=60))
        bad = " ".join(rng.choices(WORDS, k=60))
        pairs.append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": good}],
                "rejected": [{"role": "assistant", "content": bad}],
            }
        )
        sft.append({"messages": [*prompt, {"role": "assistant", "content": good}]})
    out = {}
    for name, rows in (("pairs", pairs), ("sft", sft)):
        path = workdir / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        out[name] = path
    return out


SETTINGS = {
    "max_steps": 6,
    "per_device_train_batch_size": 2,
    "max_length": 256,
    "learning_rate": 1e-4,
    "gradient_checkpointing": False,
    "logging_steps": 1,
    "save_strategy": "no",
    "seed": 0,
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
}


def worker(mode: str, stage: str, model: str, data: str, out: str, steps: int) -> dict:
    """Runs in the subprocess: one training run, ours or bare TRL; returns steps/s and peak RSS."""
    settings = {**SETTINGS, "max_steps": steps}
    if stage == "sft-pairs-batch":  # SFT over as many sequences per step as DPO (a pair is two sequences)
        stage = "sft"
        settings["per_device_train_batch_size"] = 2 * SETTINGS["per_device_train_batch_size"]
    if mode == "ours":
        from alignment.job import prepare_run, run_job
        from alignment.runs import final_metrics

        prepare_run(stage, out, values={**settings, "base": model, "data": data, "report_to": ["none"]})
        run_job(out, tee=False)
        sps = final_metrics(out)["train_steps_per_second"]
    else:  # the bare TRL script a user would write by hand, with the same settings
        import trl
        from datasets import load_dataset
        from peft import LoraConfig
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

        lora = {k: settings.pop(k) for k in ("lora_r", "lora_alpha", "lora_dropout")}
        targets = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
        tok = AutoTokenizer.from_pretrained(model)
        ds = load_dataset("json", data_files=data, split="train")
        cls = {
            "sft": (trl.SFTConfig, trl.SFTTrainer),
            "dpo": (trl.DPOConfig, trl.DPOTrainer),
            "reward": (trl.RewardConfig, trl.RewardTrainer),
        }[stage]
        args = cls[0](output_dir=out, use_cpu=True, bf16=False, report_to=[], **settings)
        if stage == "reward":
            m = AutoModelForSequenceClassification.from_pretrained(model, num_labels=1)
            m.config.pad_token_id = tok.pad_token_id
        else:
            m = AutoModelForCausalLM.from_pretrained(model)
        peft = LoraConfig(
            r=lora["lora_r"],
            lora_alpha=lora["lora_alpha"],
            lora_dropout=lora["lora_dropout"],
            target_modules=targets,
            task_type="SEQ_CLS" if stage == "reward" else "CAUSAL_LM",
        )
        trainer = cls[1](model=m, args=args, train_dataset=ds, processing_class=tok, peft_config=peft)
        sps = trainer.train().metrics["train_steps_per_second"]
    return {"steps_per_s": sps, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_one(mode: str, stage: str, model: Path, data: Path, workdir: Path, steps: int, threads: int) -> dict:
    out = workdir / f"{mode}-{stage}"
    result = workdir / f"{mode}-{stage}.json"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
    }
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, __file__, "--worker", mode, stage, str(model), str(data), str(out), str(steps), str(result)],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    r = json.loads(result.read_text())
    r["wall_s"] = time.perf_counter() - t0
    return r


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        mode, stage, model, data, out, steps, result = sys.argv[2:9]
        Path(result).write_text(json.dumps(worker(mode, stage, model, data, out, int(steps))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workdir", default="/tmp/preflab-bench-train")
    ap.add_argument("--size", default="small", choices=["tiny", "small"])
    ap.add_argument("--repeats", type=int, default=2, help="rounds of ours-vs-bare per stage, order alternating")
    args = ap.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    model = workdir / f"model-{args.size}"
    if not (model / "config.json").exists():
        from serving.engines.tiny_model import build_tiny_model

        build_tiny_model(model, args.size)
    data = make_data(workdir)

    def measure(mode: str, stage: str, rep: int) -> dict:
        r = run_one(mode, stage, model, data["sft" if stage == "sft" else "pairs"], workdir, args.steps, args.threads)
        print(
            f"{mode:5s} {stage:7s} (round {rep + 1}) {r['steps_per_s']:.3f} steps/s  peak RSS "
            f"{r['peak_rss_mb']:.0f} MiB  (wall {r['wall_s']:.0f} s)  load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        return r

    # ours and bare alternate (ours first in even rounds, bare first in odd ones), so a load that drifts during
    # the run does not always favour the same side; the ratio reported is the median of the per-round ratios
    ratios: dict[str, list[float]] = {"sft": [], "dpo": []}
    peaks: dict[str, list[float]] = {"sft": [], "dpo": []}
    for rep in range(args.repeats):
        for stage in ("sft", "dpo"):
            order = ("ours", "bare") if rep % 2 == 0 else ("bare", "ours")
            got = {mode: measure(mode, stage, rep) for mode in order}
            ratios[stage].append(got["ours"]["steps_per_s"] / got["bare"]["steps_per_s"])
            peaks[stage].append(got["ours"]["peak_rss_mb"])
    measure("ours", "reward", 0)
    sft2 = run_one("ours", "sft-pairs-batch", model, data["sft"], workdir, args.steps, args.threads)
    print(f"ours  sft at batch {2 * SETTINGS['per_device_train_batch_size']}: peak RSS {sft2['peak_rss_mb']:.0f} MiB")
    mem = statistics.median(peaks["dpo"]) / statistics.median(peaks["sft"])
    print(f"\nDPO peak memory / SFT peak memory (ours, medians, same batch size): {mem:.2f}x (target <= 1.2)")
    print(
        f"DPO peak memory / SFT peak memory at the same sequences per step (a pair is two): "
        f"{statistics.median(peaks['dpo']) / sft2['peak_rss_mb']:.2f}x (what a reference copy would add shows here)"
    )
    for stage in ("sft", "dpo"):
        each = ", ".join(f"{x:.2f}" for x in ratios[stage])
        print(
            f"ours / bare TRL steps/s ({stage}): median {statistics.median(ratios[stage]):.2f}x over "
            f"{len(ratios[stage])} round(s) [{each}] (target >= 0.95)"
        )


if __name__ == "__main__":
    main()
