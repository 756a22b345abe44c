"""The transformers engine: an OpenAI-compatible server over Hugging Face `generate`, LoRA adapters via PEFT.

    python -m serving.engines.hf_server --model models/tiny --name tiny --lora sft1=runs/1/adapter --port 8001

Serves /v1/models, /v1/chat/completions (n, temperature, top_p, max_tokens, seed, stop, stream) and
/v1/completions; also vLLM's extensions `min_tokens` and `ignore_eos` (benchmarks force equal lengths), and
vLLM's POST /v1/load_lora_adapter {"lora_name", "lora_path"} and /v1/unload_lora_adapter {"lora_name"} to add and
remove adapters while serving (same bodies, same status codes: 400 bad input, 404 unknown adapter).
Requests that share sampling parameters and arrive together are generated as one left-padded batch with
num_return_sequences=n (a micro-batcher, serving.engines.hf_generate). A request with a `seed` runs on its
own so the same seed gives the same answers. The model name picks the adapter; the base name runs the base
model with adapters disabled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from serving.engines.hf_generate import GenerationParams, Generator, MicroBatcher

log = logging.getLogger(__name__)


def _error(status: int, message: str, field: str | None = None):
    return JSONResponse(
        status_code=status, content={"error": {"message": message, "field": field, "type": "invalid_request_error"}}
    )


def _params(body: dict) -> GenerationParams:
    stop = body.get("stop")
    return GenerationParams(
        n=int(body.get("n") or 1),
        temperature=float(body.get("temperature", 1.0) if body.get("temperature") is not None else 1.0),
        top_p=float(body.get("top_p") if body.get("top_p") is not None else 1.0),
        max_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or 128),
        min_tokens=int(body.get("min_tokens") or 0),
        ignore_eos=bool(body.get("ignore_eos", False)),
        seed=body.get("seed"),
        stop=[stop] if isinstance(stop, str) else list(stop or []),
    )


def create_app(generator: Generator):
    """The FastAPI app over one loaded Generator."""
    app = FastAPI(title="PrefLab transformers engine")
    batcher = MicroBatcher(generator)

    @app.get("/v1/models")
    @app.get("/models")
    def models():
        now = int(time.time())
        data = [{"id": m, "object": "model", "created": now, "owned_by": "preflab",
                 "root": generator.base_name if m != generator.base_name else generator.model_path,
                 "parent": generator.base_name if m != generator.base_name else None}
                for m in generator.model_names()]  # fmt: skip
        return {"object": "list", "data": data}

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.post("/v1/load_lora_adapter")
    async def load_lora_adapter(request: Request):
        """vLLM's runtime LoRA route, same body: {"lora_name": NAME, "lora_path": FOLDER}."""
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "request body is not valid JSON")
        name, path = (body.get("lora_name"), body.get("lora_path")) if isinstance(body, dict) else (None, None)
        if not isinstance(name, str) or not name.strip():
            return _error(400, "lora_name must be a non-empty string", "lora_name")
        if not isinstance(path, str) or not path:
            return _error(400, "lora_path must be an adapter folder", "lora_path")
        try:  # on the generation worker thread: a model change never overlaps a generate call
            await asyncio.get_running_loop().run_in_executor(batcher.executor, generator.add_adapter, name, path)
        except ValueError as e:
            return _error(400, str(e), "lora_name" if "already served" in str(e) else "lora_path")
        return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora_adapter(request: Request):
        """vLLM's runtime LoRA route, same body: {"lora_name": NAME}."""
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "request body is not valid JSON")
        name = body.get("lora_name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip():
            return _error(400, "lora_name must be a non-empty string", "lora_name")
        try:
            await asyncio.get_running_loop().run_in_executor(batcher.executor, generator.remove_adapter, name)
        except KeyError as e:
            return _error(404, e.args[0], "lora_name")
        return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")

    async def _handle(request: Request, chat: bool):
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "request body is not valid JSON")
        if not isinstance(body, dict):
            return _error(400, "request body must be a JSON object")
        model = body.get("model") or generator.base_name
        if model not in generator.model_names():
            return _error(
                404, f"model '{model}' is not served here (served: {', '.join(generator.model_names())})", "model"
            )
        try:
            params = _params(body)
            params.validate()
        except (TypeError, ValueError) as e:
            return _error(400, str(e))
        if chat:
            messages = body.get("messages")
            if (
                not isinstance(messages, list)
                or not messages
                or not all(isinstance(m, dict) and "role" in m and "content" in m for m in messages)
            ):
                return _error(400, "messages must be a non-empty list of {role, content}", "messages")
            prompts = [generator.render_chat(messages)]
        else:
            prompt = body.get("prompt")
            prompts = [prompt] if isinstance(prompt, str) else prompt
            if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
                return _error(400, "prompt must be a string or a list of strings", "prompt")
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        created = int(time.time())
        if body.get("stream"):
            if len(prompts) != 1:
                return _error(400, "streaming takes one prompt", "prompt")
            return StreamingResponse(_stream(generator, batcher, prompts[0], model, params, rid, created, chat),
                                     media_type="text/event-stream")  # fmt: skip
        results = await asyncio.gather(*(batcher.submit(p, model, params) for p in prompts))
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for i, res in enumerate(results):
            prompt_tokens += res.prompt_tokens
            for j, ans in enumerate(res.answers):
                completion_tokens += ans.tokens
                index = i * params.n + j
                if chat:
                    choice = {"index": index, "message": {"role": "assistant", "content": ans.text},
                              "finish_reason": ans.finish_reason, "logprobs": None}  # fmt: skip
                else:
                    choice = {"index": index, "text": ans.text, "finish_reason": ans.finish_reason, "logprobs": None}
                if body.get("return_token_ids"):  # vLLM's extension: exact per-answer token counts
                    choice["token_ids"] = ans.token_ids
                choices.append(choice)
        return {"id": rid, "object": "chat.completion" if chat else "text_completion", "created": created,
                "model": model, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}  # fmt: skip

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await _handle(request, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await _handle(request, chat=False)

    return app


async def _stream(
    generator: Generator,
    batcher: MicroBatcher,
    prompt: str,
    model: str,
    params: GenerationParams,
    rid: str,
    created: int,
    chat: bool,
):
    """OpenAI chunk format over SSE: deltas per generated token as they come, then finish_reason, [DONE]."""
    obj = "chat.completion.chunk" if chat else "text_completion"

    def chunk(index: int, text: str | None, finish: str | None, first: bool = False) -> str:
        if chat:
            delta = {"role": "assistant", "content": ""} if first else ({"content": text} if text else {})
            choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
        else:
            choice = {"index": index, "text": text or "", "finish_reason": finish, "logprobs": None}
        payload = {"id": rid, "object": obj, "created": created, "model": model, "choices": [choice]}
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    if chat:
        for i in range(params.n):
            yield chunk(i, None, None, first=True)
    async for event in batcher.stream(prompt, model, params):
        if event.finish_reason is None:
            yield chunk(event.index, event.text, None)
        else:
            if event.text:
                yield chunk(event.index, event.text, None)
            yield chunk(event.index, None, event.finish_reason)
    yield "data: [DONE]\n\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="model folder (save_pretrained)")
    ap.add_argument("--name", help="served model name (default: the folder's name)")
    ap.add_argument("--lora", action="append", default=[], metavar="NAME=PATH", help="PEFT adapter, repeatable")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001)
    ap.add_argument("--max-batch", type=int, default=16, help="prompts per generate call")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    loras = {}
    for spec in args.lora:
        if "=" not in spec:
            ap.error(f"--lora {spec}: expected NAME=PATH")
        k, v = spec.split("=", 1)
        loras[k] = v
    generator = Generator(args.model, name=args.name, loras=loras, max_batch=args.max_batch, threads=args.threads)
    import uvicorn

    uvicorn.run(create_app(generator), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
