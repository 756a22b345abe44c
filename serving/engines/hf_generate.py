"""Generation for the transformers engine: one loaded model (plus PEFT adapters) and a micro-batcher.

    gen = Generator("models/tiny", loras={"sft1": "runs/1/adapter"})
    gen.generate_batch(["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"], "sft1", GenerationParams(n=4))

The batcher turns concurrent requests with equal sampling parameters into one left-padded `generate`
call with num_return_sequences=n and the KV cache on; all model work runs on one worker thread, so calls
never overlap.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(kw_only=True, frozen=True)
class GenerationParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 128
    min_tokens: int = 0
    ignore_eos: bool = False  # generate exactly max_tokens (benchmarks: random weights stop at random)
    seed: int | None = None
    stop: list[str] | tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        object.__setattr__(self, "stop", tuple(self.stop))

    def validate(self) -> None:
        if not 1 <= self.n <= 64:
            raise ValueError("n must be between 1 and 64")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if not 1 <= self.max_tokens <= 32768:
            raise ValueError("max_tokens must be between 1 and 32768")
        if self.seed is not None and not isinstance(self.seed, int):
            raise ValueError("seed must be an integer")


@dataclass
class Answer:
    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" (end of sequence or a stop string) | "length"

    @property
    def tokens(self) -> int:
        return len(self.token_ids)


@dataclass
class PromptResult:
    prompt_tokens: int
    answers: list[Answer]


@dataclass
class StreamEvent:
    index: int
    text: str
    finish_reason: str | None = None


class Generator:
    """A causal LM with optional named LoRA adapters; `generate_batch` is the only entry to the model."""

    def __init__(self, model_path: str | Path, *, name: str | None = None, loras: dict[str, str] | None = None,
                 max_batch: int = 16, threads: int = 0):  # fmt: skip
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.model_path = str(Path(model_path).resolve())
        self.base_name = name or Path(model_path).name
        self.max_batch = max_batch
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.tokenizer.padding_side = "left"  # decoder-only: new tokens must follow the prompt directly
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch.float32)
        self.loras = dict(loras or {})
        if self.loras:
            from peft import PeftModel

            (first, path), *rest = self.loras.items()
            model = PeftModel.from_pretrained(model, path, adapter_name=first)
            for k, p in rest:
                model.load_adapter(p, adapter_name=k)
        self.model = model.eval()
        eos = self.model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if self.tokenizer.eos_token_id is not None:
            eos.append(self.tokenizer.eos_token_id)
        self.eos_ids = sorted(set(eos))
        self._lock = threading.Lock()
        log.info("loaded %s as %s with adapters %s", self.model_path, self.base_name, list(self.loras))

    def model_names(self) -> list[str]:
        return [self.base_name, *self.loras]

    def add_adapter(self, name: str, path: str | Path) -> None:
        """Load one more PEFT adapter while serving (under the generation lock, so no request sees half of it)."""
        from peft import PeftModel

        path = str(Path(path).resolve())
        if name in self.model_names():
            raise ValueError(f"'{name}' is already served here")
        if not (Path(path) / "adapter_config.json").is_file():
            raise ValueError(f"{path} is not a PEFT adapter folder (no adapter_config.json)")
        with self._lock:
            if self.loras:
                self.model.load_adapter(path, adapter_name=name)
            else:  # the first adapter wraps the plain model; base requests then run with adapters disabled
                self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name).eval()
            self.loras[name] = path
        log.info("loaded adapter %s from %s", name, path)

    def remove_adapter(self, name: str) -> None:
        """Stop serving adapter NAME and free its weights (under the generation lock). The last one unwraps the
        PEFT model, so the base runs as plain as before any adapter came."""
        if name not in self.loras:
            raise KeyError(f"adapter '{name}' is not served here (adapters: {', '.join(self.loras) or 'none'})")
        with self._lock:
            if len(self.loras) == 1:
                self.model = self.model.unload().eval()  # drops the LoRA layers without merging them
            else:
                self.model.delete_adapter(name)
            del self.loras[name]
        log.info("unloaded adapter %s", name)

    def render_chat(self, messages: list[dict]) -> str:
        msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return "".join(f"{m['role']}: {m['content']}\n" for m in msgs) + "assistant: "

    def _adapter_context(self, model_name: str):
        from contextlib import nullcontext

        if not self.loras:
            return nullcontext()
        if model_name == self.base_name:
            return self.model.disable_adapter()
        self.model.set_adapter(model_name)
        return nullcontext()

    def generate_batch(self, prompts: list[str], model_name: str, params: GenerationParams,
                       streamer=None) -> list[PromptResult]:  # fmt: skip
        """n answers for each prompt, in one generate call."""
        import torch

        with self._lock:
            enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            width = enc["input_ids"].shape[1]
            kwargs = dict(max_new_tokens=params.max_tokens, num_return_sequences=params.n, use_cache=True,
                          pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.eos_ids)  # fmt: skip
            min_new = params.max_tokens if params.ignore_eos else params.min_tokens
            if min_new:
                kwargs["min_new_tokens"] = min_new
            if params.temperature > 0:
                kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            if params.seed is not None:
                torch.manual_seed(params.seed)
            with torch.inference_mode(), self._adapter_context(model_name):
                out = self.model.generate(**enc, **kwargs, streamer=streamer)
            new = out[:, width:].tolist()
            results = []
            for i in range(len(prompts)):
                prompt_tokens = int(enc["attention_mask"][i].sum())
                answers = [self._answer(row, params) for row in new[i * params.n : (i + 1) * params.n]]
                results.append(PromptResult(prompt_tokens, answers))
            return results

    def _answer(self, row: list[int], params: GenerationParams) -> Answer:
        cut = next((k for k, t in enumerate(row) if t in self.eos_ids), None)
        ids = row if cut is None else row[:cut]
        finish = "length" if cut is None else "stop"
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        text, stopped = apply_stop(text, params.stop)
        if stopped:
            return Answer(text, self.tokenizer.encode(text, add_special_tokens=False), "stop")
        return Answer(text, ids, finish)


def apply_stop(text: str, stops: tuple[str, ...] | list[str]) -> tuple[str, bool]:
    """Cut at the earliest stop string (not included), as OpenAI does."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


class _QueueStreamer:
    """Receives each step's tokens from `generate` on the worker thread; emits per-answer text deltas."""

    def __init__(self, gen: Generator, params: GenerationParams, emit):
        self.gen, self.params, self.emit = gen, params, emit
        self.ids: list[list[int]] = []
        self.sent: list[str] = []
        self.done: list[bool] = []

    def put(self, value) -> None:
        if value.dim() == 2:  # the (expanded) prompt, sent once before the first step
            rows = value.shape[0]
            self.ids, self.sent, self.done = [[] for _ in range(rows)], [""] * rows, [False] * rows
            return
        for i, tok in enumerate(value.tolist()):
            if self.done[i]:
                continue
            if tok in self.gen.eos_ids:
                self.done[i] = True
                continue
            self.ids[i].append(tok)
            text = self.gen.tokenizer.decode(self.ids[i], skip_special_tokens=True)
            text, stopped = apply_stop(text, self.params.stop)
            if text.endswith("\ufffd") and not stopped:  # half a UTF-8 character: wait for the rest
                continue
            if len(text) > len(self.sent[i]) and text.startswith(self.sent[i]):
                self.emit(StreamEvent(i, text[len(self.sent[i]) :]))
                self.sent[i] = text
            self.done[i] = stopped

    def end(self) -> None:
        pass


class MicroBatcher:
    """Groups requests with equal parameters into one generate call; one worker thread runs the model."""

    def __init__(self, gen: Generator, wait_s: float = 0.005):
        self.gen, self.wait_s = gen, wait_s
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
        self.queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self.queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, prompt: str, model: str, params: GenerationParams) -> PromptResult:
        self.start()
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((prompt, model, params, fut))
        return await fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        held: list = []
        while True:
            first = held.pop(0) if held else await self.queue.get()
            await asyncio.sleep(self.wait_s)  # let requests sent together arrive
            while not self.queue.empty():
                held.append(self.queue.get_nowait())
            # a seeded request runs alone: the same seed must give the same answers whatever else is queued
            key = (first[1], first[2]) if first[2].seed is None else None
            batch, rest = [first], []
            for job in held:
                if key is not None and (job[1], job[2]) == key and len(batch) < self.gen.max_batch:
                    batch.append(job)
                else:
                    rest.append(job)
            held = rest
            try:
                results = await loop.run_in_executor(
                    self.executor, self.gen.generate_batch, [j[0] for j in batch], first[1], first[2]
                )
                for job, res in zip(batch, results, strict=True):
                    if not job[3].done():
                        job[3].set_result(res)
            except Exception as e:
                log.exception("generation failed")
                for job in batch:
                    if not job[3].done():
                        job[3].set_exception(e)

    async def stream(self, prompt: str, model: str, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        """Deltas while generating (on the same worker thread as batches), then one finish event per answer."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        streamer = _QueueStreamer(self.gen, params, lambda ev: loop.call_soon_threadsafe(events.put_nowait, ev))
        job = loop.run_in_executor(self.executor, self.gen.generate_batch, [prompt], model, params, streamer)
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(events.put_nowait, None))
        while (ev := await events.get()) is not None:
            yield ev
        (result,) = await job
        for i, ans in enumerate(result.answers):
            tail = ans.text[len(streamer.sent[i]) :] if ans.text.startswith(streamer.sent[i]) else ""
            yield StreamEvent(i, tail, ans.finish_reason)
