"""Sampling throughput: the sampler through vLLM (a) and the transformers engine (b) vs a naive HF loop (c).

    .venv/bin/python bench/sampling.py                         # 64 prompts x n=4 x 128 new tokens, `small` model
    .venv/bin/python bench/sampling.py --prompts 16 --max-tokens 32 --size tiny   # quick check

Every variant generates exactly --max-tokens tokens per answer (ignore_eos / min_new_tokens): random-weight
models stop at random, which would make tokens/s incomparable. (c) calls `generate` once per prompt per
answer, the way a first script would; it is measured on --naive-prompts prompts (tokens/s is a rate; the
full loop would take far longer than the others). Engine start-up is not timed: it is paid once.
Targets on a 2-core CPU: a/c >= 5, b/c >= 3.
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

from db.hashing import prompt_hash
from db.sampling import delete_answers
from db.staging import Batch
from db.store import Store

TOPICS = ["la luz", "gravity", "量子力学", "the sea", "volcanoes", "el tiempo", "photosynthesis", "音乐", "chess",
          "bread", "rivers", "la historia de Roma", "black holes", "typography", "bees", "compilers"]  # fmt: skip


def prompts(k: int) -> list[str]:
    return [f"Explain {TOPICS[i % len(TOPICS)]} in simple words, please (#{i})." for i in range(k)]


def naive_loop(model_dir: Path, texts: list[str], n: int, max_tokens: int) -> tuple[int, float]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokens, t0 = 0, time.perf_counter()
    with torch.inference_mode():
        for text in texts:
            chat = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                           add_generation_prompt=True)  # fmt: skip
            enc = tok(chat, return_tensors="pt", add_special_tokens=False)
            for _ in range(n):
                out = model.generate(**enc, do_sample=True, temperature=0.8, top_p=0.95, max_new_tokens=max_tokens,
                                     min_new_tokens=max_tokens, pad_token_id=tok.pad_token_id)  # fmt: skip
                tokens += out.shape[1] - enc["input_ids"].shape[1]
    return tokens, time.perf_counter() - t0


def through_engine(backend: str, model_dir: Path, db: Path, n: int, max_tokens: int, concurrency: int,
                   eager: bool) -> tuple:  # fmt: skip
    from serving.engines.launcher import start_engine, stop_engine
    from serving.sampling.sampler import run_sampling

    name = f"bench-{backend}"
    t0 = time.perf_counter()
    start_engine(model=model_dir, name=name, backend=backend, timeout=1200, max_model_len=1024, enforce_eager=eager)
    startup = time.perf_counter() - t0
    store = Store.open(db)
    try:
        report = run_sampling(store, "bench", name, n=n, max_tokens=max_tokens, ignore_eos=True,
                              concurrency=concurrency, temperature=0.8, top_p=0.95)  # fmt: skip
    finally:
        store.close()
        stop_engine(name)
    if report.failures:
        raise SystemExit(f"{backend}: {len(report.failures)} prompts failed: {report.failures[0]}")
    return report.completion_tokens, report.elapsed_s, startup, report.answers_stored


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--size", choices=["tiny", "small"], default="small")
    ap.add_argument("--model-dir", type=Path, help="use this model folder instead of building one")
    ap.add_argument("--naive-prompts", type=int, default=4, help="prompts for the naive loop (c)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--skip-vllm", action="store_true")
    ap.add_argument(
        "--vllm-compile",
        action="store_true",
        help="let vLLM torch.compile the model (faster decoding; the warm-up takes minutes on 2 cores)",
    )
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="preflab-bench-"))
    os.environ["PREFLAB_HOME"] = str(work / "home")
    model_dir = args.model_dir
    if model_dir is None:
        from serving.engines.tiny_model import build_tiny_model

        model_dir = build_tiny_model(work / args.size, size=args.size)
    texts = prompts(args.prompts)
    db = work / "bench.duckdb"
    store = Store.open(db)
    b = Batch()
    for t in texts:
        msgs = [{"role": "user", "content": t}]
        b.prompts.append({"key": prompt_hash(msgs), "messages": json.dumps(msgs, ensure_ascii=False)})
    store.write_batch("bench", b, created_by="bench")
    store.close()

    results = {}
    tok, el = naive_loop(model_dir, texts[: args.naive_prompts], args.n, args.max_tokens)
    results["c_naive_hf_generate"] = {"tokens": tok, "seconds": round(el, 2), "tokens_per_s": round(tok / el, 1)}
    print(f"(c) naive HF loop: {tok} tokens in {el:.1f}s = {tok / el:.1f} tokens/s", flush=True)
    backends = [("b_transformers_engine", "transformers")] + ([] if args.skip_vllm else [("a_vllm_engine", "vllm")])
    for key, backend in backends:
        tok, el, startup, answers = through_engine(
            backend, model_dir, db, args.n, args.max_tokens, args.concurrency, eager=not args.vllm_compile
        )
        results[key] = {"tokens": tok, "seconds": round(el, 2), "tokens_per_s": round(tok / el, 1),
                        "answers": answers, "startup_s": round(startup, 1)}  # fmt: skip
        print(f"({key[0]}) sampler via {backend}: {answers} answers, {tok} tokens in {el:.1f}s = "
              f"{tok / el:.1f} tokens/s (start-up {startup:.0f}s, not timed)", flush=True)  # fmt: skip
        # the next engine must sample from scratch: drop this engine's answers
        s = Store.open(db)
        delete_answers(s, "bench")
        s.close()
    c = results["c_naive_hf_generate"]["tokens_per_s"]
    if "a_vllm_engine" in results:
        print(f"a/c = {results['a_vllm_engine']['tokens_per_s'] / c:.2f}  (target >= 5)")
    print(f"b/c = {results['b_transformers_engine']['tokens_per_s'] / c:.2f}  (target >= 3)")
    config = {"prompts": args.prompts, "n": args.n, "max_tokens": args.max_tokens, "size": args.size,
              "naive_prompts": args.naive_prompts, "concurrency": args.concurrency,
              "vllm_compile": args.vllm_compile, "cpus": os.cpu_count(), "load_avg": os.getloadavg()}  # fmt: skip
    print(json.dumps({"config": config, "results": results}, ensure_ascii=False))


if __name__ == "__main__":  # vLLM's CPU start-up re-imports __main__ in workers
    main()
