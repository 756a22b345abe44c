"""Offline batch sampling: vLLM's LLM.chat in a subprocess of the vLLM venv, stored as the sampler stores.

    preflab sample --dataset demo --model models/tiny --n 4 --offline

For big jobs with no engine running: the prompts that still need answers go to
serving/engines/vllm_batch.py as JSONL; its results come back chunk by chunk and are stored while the
next chunk runs, with the same provenance, de-duplication and resumability as `run_sampling` (engine is
'vllm-offline'; latency_ms is not meaningful in a batch and stays empty).
"""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from db import sampling as sql
from serving.engines import registry
from serving.engines.errors import EngineError
from serving.engines.launcher import log_tail, vllm_python
from serving.sampling.sampler import SamplingConfig, SamplingReport, store_prompt_answers

log = logging.getLogger(__name__)

BATCH_SCRIPT = Path(__file__).resolve().parents[1] / "engines" / "vllm_batch.py"  # run by the vLLM venv's python


def _model_source(model: str, engine: str | None) -> tuple[str, str, str | None, str | None]:
    """(model folder, provenance model name, adapter name, adapter folder) for a folder or a served name."""
    if Path(model).is_dir():
        path = Path(model).resolve()
        return str(path), path.name, None, None
    candidates = [registry.get_engine(engine)] if engine else registry.list_engines()
    for r in candidates:
        if r["backend"] == "external":
            continue
        if r.get("model") == model:
            return r["model_path"], model, None, None
        if model in r.get("loras", {}):
            return r["model_path"], r["model"], model, r["loras"][model]
    raise registry.ModelNotFoundError(
        f"--model {model}: not a model folder and no local engine record names it (offline mode needs the weights)"
    )


def run_offline_sampling(store, dataset: str, model: str, *, engine: str | None = None, n: int = 4,
                         temperature: float = 0.8, top_p: float = 0.95, max_tokens: int = 256,
                         seed: int | None = None, limit: int | None = None, select: str = "order",
                         min_tokens: int | None = None,
                         ignore_eos: bool = False, chunk: int = 256, enforce_eager: bool = False,
                         timeout_s: float = 24 * 3600,
                         progress: Callable[[dict], None] | None = None, cancel: threading.Event | None = None,
                         created_by: str = "sampler") -> SamplingReport:  # fmt: skip
    """Like serving.sampling.sampler.run_sampling, through LLM.chat in the vLLM venv instead of an engine."""
    cfg = SamplingConfig(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed, limit=limit,
                         select=select, min_tokens=min_tokens, ignore_eos=ignore_eos)  # fmt: skip
    store.dataset_id(dataset)
    path, model_name, adapter, adapter_path = _model_source(model, engine)
    py = vllm_python()
    if not py.exists():
        raise EngineError(f"the vLLM environment is missing ({py}): run `make vllm-env`")
    params = cfg.params()
    params_json = sql.canonical_params(params)
    todo, total = sql.prompts_to_sample(store, dataset, model=model_name, adapter=adapter, params=params_json, n=n,
                                        limit=limit, select=select)  # fmt: skip
    report = SamplingReport(dataset=dataset, model=model, engine="vllm-offline", prompts_total=total,
                            prompts_skipped=total - len(todo))  # fmt: skip
    t0 = time.perf_counter()

    def tick() -> None:
        if progress is not None:
            progress({"prompts_total": len(todo), "prompts_finished": report.prompts_done,
                      "answers_stored": report.answers_stored, "completion_tokens": report.completion_tokens,
                      "failures": len(report.failures), "elapsed_s": time.perf_counter() - t0})  # fmt: skip

    if not todo:
        return report
    rng = random.Random()
    with tempfile.TemporaryDirectory(prefix="preflab-offline-") as tmp:
        inp, outp, logp = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl", Path(tmp) / "vllm.log"
        with open(inp, "w", encoding="utf-8") as fh:
            for p in todo:
                s = cfg.request_seed(p["id"], p["have"])  # a seed per request: given, or drawn and recorded
                fh.write(json.dumps({"prompt_id": p["id"], "messages": p["messages"], "n": n - p["have"],
                                     "seed": s if s is not None else rng.randrange(2**31)},
                                    ensure_ascii=False) + "\n")  # fmt: skip
        outp.touch()
        cmd = [str(py), str(BATCH_SCRIPT), "--model", path, "--input", str(inp), "--output", str(outp),
               "--params", json.dumps({k: v for k, v in params.items() if k not in ("n", "seed")}),
               "--chunk", str(chunk)]  # fmt: skip
        if adapter:
            cmd += ["--lora", f"{adapter}={adapter_path}"]
        if enforce_eager:
            cmd += ["--enforce-eager"]
        env = dict(os.environ)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; plenty for small models on CPU
        env.setdefault("HF_HUB_OFFLINE", "1")
        with open(logp, "wb") as logf:
            proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        stored: set[int] = set()
        with open(outp, encoding="utf-8") as results:
            buf = ""
            while True:
                finished = proc.poll() is not None
                buf += results.read()
                *lines, buf = buf.split("\n")
                for line in lines:
                    if line.strip():
                        _store_line(store, report, json.loads(line), model_name, adapter, params_json, created_by, n)
                        stored.add(json.loads(line)["prompt_id"])
                        tick()
                if finished:
                    break
                if (cancel is not None and cancel.is_set()) or time.perf_counter() - t0 > timeout_s:
                    proc.terminate()
                    proc.wait(30)
                    report.cancelled = True
                    break
                time.sleep(0.5)
        if proc.returncode not in (0, None) and not report.cancelled:
            err = f"vLLM batch exited with code {proc.returncode}: {log_tail(logp, 5)}"
            report.failures += [{"prompt_id": p["id"], "error": err} for p in todo if p["id"] not in stored]
    report.elapsed_s = time.perf_counter() - t0
    return report


def _store_line(store, report: SamplingReport, line: dict, model: str, adapter: str | None, params_json: str,
                created_by: str, n: int | None = None) -> None:  # fmt: skip
    report.prompt_tokens += line["prompt_tokens"]
    report.completion_tokens += sum(a["completion_tokens"] for a in line["answers"])
    provenance = {"model": model, "adapter": adapter, "engine": "vllm-offline", "params": params_json,
                  "seed": line["seed"], "prompt_tokens": line["prompt_tokens"], "latency_ms": None}  # fmt: skip
    store_prompt_answers(store, report, line["prompt_id"], line["answers"], provenance=provenance,
                         created_by=created_by, n=n)  # fmt: skip
