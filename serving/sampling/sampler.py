"""The multi-answer sampler: n answers per prompt from an OpenAI-compatible engine, stored with provenance.

    preflab sample --dataset demo --model tiny --n 4 --temperature 0.8 --max-tokens 256
    report = run_sampling(store, "demo", "tiny", n=4, progress=print, cancel=threading.Event())

One chat request per prompt asks for the missing answers (n minus those already stored with the same
model, adapter and parameters), so an interrupted run picks up where it stopped. Requests go to the pool
of engines serving the model (serving.engines.pool): one that fails is retried on another member, and a
prompt never stores more than n answers of one provenance, whichever attempt answered. Requests fan out over
async HTTP with bounded concurrency so the engine's batching stays full. Each prompt's answers are
written in their own transaction as soon as they arrive: a crash loses only what was in flight, and the
UNIQUE (prompt_id, content_hash) constraint keeps a rerun from duplicating anything. Connection errors,
timeouts, 429 and 5xx are retried (on another member, or with exponential backoff on the same one when
there is no other); other 4xx fail that prompt at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import httpx

from db import sampling as sql
from db.errors import PrefLabError
from db.hashing import text_hash
from serving.engines.pool import EnginePool, PoolError
from serving.engines.registry import resolve_pool

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class SamplingConfig:
    n: int = 4
    temperature: float = 0.8  # diverse enough that the n answers differ, low enough to stay on topic
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int | None = None  # base seed; each request gets seed + a per-prompt offset (stored per answer)
    min_tokens: int | None = None  # vLLM extension (the transformers engine honours it too)
    ignore_eos: bool = False  # vLLM extension: generate exactly max_tokens (benchmarks)
    limit: int | None = None
    select: str = "order"  # which prompts --limit takes: 'order' (by id) or 'uncertainty' (db.sampling)
    concurrency: int = 8
    timeout_s: float = 600.0
    retries: int = 4
    backoff_s: float = 0.5

    def __post_init__(self):
        if not 1 <= self.n <= 64:
            raise PrefLabError(f"--n {self.n}: use 1..64 answers per prompt")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise PrefLabError("--temperature must be >= 0 and --top-p in (0, 1]")
        if self.max_tokens < 1:
            raise PrefLabError(f"--max-tokens {self.max_tokens}: must be at least 1")
        if self.concurrency < 1:
            raise PrefLabError(f"--concurrency {self.concurrency}: must be at least 1")
        if self.limit is not None and self.limit < 1:
            raise PrefLabError(f"--limit {self.limit}: must be at least 1")
        if self.select not in sql.SELECTS:
            raise PrefLabError(f"--select {self.select}: use one of {', '.join(sql.SELECTS)}")

    def params(self) -> dict:
        """What defines 'the same sampling' for resuming: stored with every answer."""
        p = {"n": self.n, "temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
             "seed": self.seed}  # fmt: skip
        if self.min_tokens:
            p["min_tokens"] = self.min_tokens
        if self.ignore_eos:
            p["ignore_eos"] = True
        return p

    def request_seed(self, prompt_id: int, have: int) -> int | None:
        # distinct per prompt and per top-up, reproducible across runs
        return None if self.seed is None else (self.seed + prompt_id * 1009 + have) % 2**31


@dataclass
class SamplingReport:
    """What a run did. `failures`: [{prompt_id, error}] for prompts that got no answers this time."""

    dataset: str
    model: str
    engine: str | None = None
    prompts_total: int = 0
    prompts_skipped: int = 0  # already held n answers with these parameters
    prompts_done: int = 0
    answers_received: int = 0
    answers_stored: int = 0
    duplicates_dropped: int = 0
    empty_dropped: int = 0
    surplus_dropped: int = 0  # answers past n for a prompt (a retried request answered twice)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    elapsed_s: float = 0.0
    cancelled: bool = False
    failures: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        rate = self.completion_tokens / self.elapsed_s if self.elapsed_s else 0.0
        return (f"{self.answers_stored} answers stored for {self.prompts_done} prompts "
                f"({self.prompts_skipped} already complete, {len(self.failures)} failed); dropped "
                f"{self.duplicates_dropped} duplicates and {self.empty_dropped} empty answers; "
                f"{self.completion_tokens} tokens in {self.elapsed_s:.1f}s ({rate:.1f} tokens/s)"
                + ("; cancelled" if self.cancelled else ""))  # fmt: skip


def normalise(text: str) -> str:
    """Whitespace- and case-insensitive identity used to drop near-identical answers."""
    return " ".join(text.split()).casefold()


class _Retryable(Exception):
    pass


class _Fatal(Exception):
    pass


async def _post(pool: EnginePool, path: str, body, cfg: SamplingConfig,
                cancel: threading.Event | None) -> tuple[dict, dict]:  # fmt: skip
    """(member, JSON answer) from the pool, which retries connection errors, timeouts, 429 and 5xx on
    another member; other 4xx raise _Fatal at once, running out of attempts _Retryable."""
    try:
        member, r = await pool.send(path, body, attempts=cfg.retries + 1, backoff_s=cfg.backoff_s,
                                    cancelled=lambda: cancel is not None and cancel.is_set())  # fmt: skip
    except PoolError as e:
        raise (_Fatal if str(e) == "cancelled" else _Retryable)(str(e)) from e
    if r.status_code == 200:
        return member, r.json()
    raise _Fatal(f"HTTP {r.status_code}: {r.text[:300]}")


def _select_answers(choices: list[dict], existing: list[str]) -> tuple[list[dict], int, int]:
    """(kept choices, duplicates dropped, empty dropped); duplicates compare normalised text."""
    seen = {normalise(t) for t in existing}
    kept, dups, empty = [], 0, 0
    for c in choices:
        text = c["text"]
        if not text.strip():
            empty += 1
            continue
        key = normalise(text)
        if key in seen:
            dups += 1
            continue
        seen.add(key)
        kept.append(c)
    return kept, dups, empty


def store_prompt_answers(store, report: SamplingReport, prompt_id: int, choices: list[dict], *, provenance: dict,
                         created_by: str, n: int | None = None) -> int:  # fmt: skip
    """De-duplicate one prompt's answers against what it holds, store the rest; update the report.

    `choices`: [{text, finish_reason, completion_tokens}]; `provenance`: model, adapter, engine, params,
    seed, prompt_tokens, latency_ms (shared by the answers of one request). With `n`, the prompt never holds
    more than n answers of this provenance: answers past n are dropped in the storing transaction, so a
    request that was retried and then answered twice (or two runs at once) stores n answers, not more.
    """
    kept, dups, empty = _select_answers(choices, sql.existing_texts(store, prompt_id))
    rows = [{"text": c["text"], "content_hash": text_hash(c["text"]), "kind": "model",
             "finish_reason": c.get("finish_reason"), "completion_tokens": c.get("completion_tokens"),
             "metadata": c.get("metadata"), **provenance} for c in kept]  # fmt: skip
    added, surplus = sql.insert_answers(store, prompt_id, rows, created_by=created_by, cap=n)
    with _REPORT_LOCK:  # several prompts are stored from worker threads at once
        _count(report, len(choices), added, dups + (len(rows) - added - surplus), empty)
        report.surplus_dropped += surplus
    return added


_REPORT_LOCK = threading.Lock()


def _count(report: SamplingReport, received: int, added: int, dups: int, empty: int) -> None:
    report.answers_received += received
    report.answers_stored += added
    report.duplicates_dropped += dups
    report.empty_dropped += empty
    report.prompts_done += 1


def _split_tokens(total: int | None, k: int) -> list[int | None]:
    """Per-answer completion tokens when the engine reports only a total (OpenAI's usage is per request)."""
    if total is None or k == 0:
        return [None] * k
    base, extra = divmod(total, k)
    return [base + (1 if i < extra else 0) for i in range(k)]


async def _sample(store, dataset: str, targets: list[dict], cfg: SamplingConfig, report: SamplingReport,
                  progress: Callable[[dict], None] | None, cancel: threading.Event | None,
                  created_by: str, transport: httpx.AsyncBaseTransport | None = None) -> None:  # fmt: skip
    target = targets[0]  # the members serve the same name: model, adapter and base model are theirs alike
    params = cfg.params()
    params_json = sql.canonical_params(params)
    todo, total = sql.prompts_to_sample(store, dataset, model=target["base_model"], adapter=target["adapter"],
                                        params=params_json, n=cfg.n, limit=cfg.limit,
                                        select=cfg.select)  # fmt: skip
    report.prompts_total = total
    report.prompts_skipped = total - len(todo)
    started = time.perf_counter()

    def tick() -> None:
        if progress is not None:
            progress({"prompts_total": len(todo), "prompts_finished": report.prompts_done + len(report.failures),
                      "answers_stored": report.answers_stored, "completion_tokens": report.completion_tokens,
                      "failures": len(report.failures), "elapsed_s": time.perf_counter() - started})  # fmt: skip

    tick()
    sem = asyncio.Semaphore(cfg.concurrency)
    pool = EnginePool(targets, timeout=httpx.Timeout(cfg.timeout_s, connect=10.0), transport=transport,
                      limits=httpx.Limits(max_connections=cfg.concurrency,
                                          max_keepalive_connections=cfg.concurrency))  # fmt: skip

    async def one(prompt: dict) -> None:
        async with sem:
            if cancel is not None and cancel.is_set():
                report.cancelled = True
                return
            want = cfg.n - prompt["have"]
            seed = cfg.request_seed(prompt["id"], prompt["have"])
            body = {
                "model": target["model"],
                "n": want,
                "temperature": cfg.temperature,
                "top_p": cfg.top_p,
                "max_tokens": cfg.max_tokens,
                "messages": [{"role": m["role"], "content": m["content"]} for m in prompt["messages"]],
            }
            if seed is not None:
                body["seed"] = seed
            if cfg.min_tokens:
                body["min_tokens"] = cfg.min_tokens
            if cfg.ignore_eos:
                body["ignore_eos"] = True

            def for_member(member: dict) -> dict:  # exact per-answer token counts (a vLLM extension)
                return {**body, "return_token_ids": True} if member["backend"] != "external" else body

            t0 = time.perf_counter()
            try:
                member, data = await _post(pool, "chat/completions", for_member, cfg, cancel)
            except (_Retryable, _Fatal) as e:
                if str(e) == "cancelled":
                    report.cancelled = True
                else:
                    report.failures.append({"prompt_id": prompt["id"], "error": str(e)})
                tick()
                return
            latency_ms = (time.perf_counter() - t0) * 1000
            usage = data.get("usage") or {}
            raw = data.get("choices") or []
            per = _split_tokens(usage.get("completion_tokens"), len(raw))
            choices = [{"text": (c.get("message") or {}).get("content") or "",
                        "finish_reason": c.get("finish_reason"),
                        "completion_tokens": len(c["token_ids"]) if c.get("token_ids") is not None else per[i],
                        "metadata": None if c.get("token_ids") is not None or len(raw) == 1
                        else '{"completion_tokens": "request total split evenly"}'}
                       for i, c in enumerate(raw)]  # fmt: skip
            report.prompt_tokens += usage.get("prompt_tokens") or 0
            report.completion_tokens += usage.get("completion_tokens") or 0
            provenance = {"model": target["base_model"], "adapter": target["adapter"], "engine": member["engine"],
                          "params": params_json, "seed": seed, "prompt_tokens": usage.get("prompt_tokens"),
                          "latency_ms": latency_ms}  # fmt: skip
            await asyncio.to_thread(store_prompt_answers, store, report, prompt["id"], choices,
                                    provenance=provenance, created_by=created_by, n=cfg.n)  # fmt: skip
            tick()

    try:
        await asyncio.gather(*(one(p) for p in todo))
    finally:
        await pool.aclose()


def run_sampling(store, dataset: str, model: str, *, engine: str | None = None, n: int = 4,
                 temperature: float = 0.8, top_p: float = 0.95, max_tokens: int = 256, seed: int | None = None,
                 limit: int | None = None, select: str = "order", concurrency: int = 8,
                 min_tokens: int | None = None,
                 ignore_eos: bool = False, timeout_s: float = 600.0, retries: int = 4, backoff_s: float = 0.5,
                 progress: Callable[[dict], None] | None = None, cancel: threading.Event | None = None,
                 created_by: str = "sampler",
                 transport: httpx.AsyncBaseTransport | None = None) -> SamplingReport:  # fmt: skip
    """Sample n answers per prompt of `dataset` from `model` and store them; returns a SamplingReport.

    `model` is a served model name (a base model or a LoRA adapter) resolved through the engine registry to
    the pool of engines serving it (`engine` pins one engine); `transport` replaces the network (tests).
    `progress` is called with a dict (prompts_total, prompts_finished, answers_stored, completion_tokens,
    failures, elapsed_s) after each prompt; setting `cancel` stops
    sending new requests. Safe to call from a background thread (it runs its own event loop).
    """
    cfg = SamplingConfig(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed, limit=limit,
                         select=select, concurrency=concurrency, min_tokens=min_tokens, ignore_eos=ignore_eos,
                         timeout_s=timeout_s, retries=retries, backoff_s=backoff_s)  # fmt: skip
    store.dataset_id(dataset)  # unknown dataset: one clear error before touching the engine
    targets = resolve_pool(model, engine)
    report = SamplingReport(dataset=dataset, model=model, engine=",".join(t["engine"] for t in targets))
    t0 = time.perf_counter()
    try:
        asyncio.run(_sample(store, dataset, targets, cfg, report, progress, cancel, created_by, transport))
    finally:
        report.elapsed_s = time.perf_counter() - t0
    log.info("sampling %s/%s: %s", dataset, model, report.summary())
    return report
