"""Offline batch sampling with vLLM's LLM.chat: run with the vLLM environment's Python, not imported by PrefLab.

    .venv-vllm/bin/python serving/engines/vllm_batch.py --model models/tiny --input todo.jsonl \
        --output results.jsonl --params '{"temperature": 0.8, "top_p": 0.95, "max_tokens": 256}'

Input lines: {"prompt_id": 1, "messages": [...], "n": 4, "seed": 123}. Output lines, appended and flushed
chunk by chunk so the caller can store results while later chunks run:
{"prompt_id": 1, "seed": 123, "prompt_tokens": 17, "answers": [{"text", "completion_tokens", "finish_reason"}]}.
Each request has its own SamplingParams(n=..., seed=...). Only the standard library and vLLM are used here:
this file runs in the vLLM venv, where PrefLab itself is not installed.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="vLLM offline batch sampling (LLM.chat)")
    ap.add_argument("--model", required=True)
    ap.add_argument("--served-name", help="name for the model (unused by vLLM; kept in logs)")
    ap.add_argument("--lora", metavar="NAME=PATH", help="sample through this LoRA adapter")
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--params", required=True, help="JSON: temperature, top_p, max_tokens, min_tokens, ignore_eos")
    ap.add_argument("--chunk", type=int, default=256, help="requests per LLM.chat call (results flushed after each)")
    ap.add_argument("--max-model-len", type=int)
    ap.add_argument("--enforce-eager", action="store_true", help="skip torch.compile (fast start)")
    args = ap.parse_args(argv)

    from vllm import LLM, SamplingParams

    params = json.loads(args.params)
    with open(args.input, encoding="utf-8") as fh:
        requests = [json.loads(line) for line in fh if line.strip()]
    llm_kwargs = {"model": args.model, "dtype": "float32", "enable_lora": bool(args.lora),
                  "enforce_eager": args.enforce_eager}  # fmt: skip
    if args.max_model_len:
        llm_kwargs["max_model_len"] = args.max_model_len
    if args.lora:
        llm_kwargs["max_lora_rank"] = 64
    llm = LLM(**llm_kwargs)
    lora = None
    if args.lora:
        from vllm.lora.request import LoRARequest

        name, _, path = args.lora.partition("=")
        lora = LoRARequest(name, 1, path)
    with open(args.output, "a", encoding="utf-8") as out:
        for start in range(0, len(requests), args.chunk):
            chunk = requests[start : start + args.chunk]
            sps = [
                SamplingParams(
                    n=r["n"],
                    seed=r.get("seed"),
                    temperature=params.get("temperature", 1.0),
                    top_p=params.get("top_p", 1.0),
                    max_tokens=params.get("max_tokens", 256),
                    min_tokens=params.get("min_tokens") or 0,
                    ignore_eos=bool(params.get("ignore_eos")),
                )  # fmt: skip
                for r in chunk
            ]
            results = llm.chat([r["messages"] for r in chunk], sampling_params=sps, use_tqdm=False, lora_request=lora)
            for r, res in zip(chunk, results, strict=True):
                answers = [
                    {"text": o.text, "completion_tokens": len(o.token_ids), "finish_reason": o.finish_reason}
                    for o in res.outputs
                ]
                line = {"prompt_id": r["prompt_id"], "seed": r.get("seed"),
                        "prompt_tokens": len(res.prompt_token_ids or []), "answers": answers}  # fmt: skip
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
            out.flush()
            print(f"done {min(start + args.chunk, len(requests))}/{len(requests)}", file=sys.stderr, flush=True)  # noqa: T201
    return 0


if __name__ == "__main__":  # vLLM's CPU workers re-import the main module: keep work behind this guard
    sys.exit(main())
