"""The OpenAI-compatible gateway: /v1 routes of the PrefLab server, forwarding to the engine of each model.

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="pl-...")   # any key while none exist
    client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], stream=True)

- GET /v1/models: models of running engines (`served` true; read from the engine registry on each call, so an
  adapter loaded or unloaded while an engine runs shows at once), adapters registered in the models table that
  no engine serves (`served` false), the embedding model.
- POST /v1/chat/completions and /v1/completions: routed by `model` to the pool of engines serving it
  (serving.engines.registry.resolve_pool, serving.engines.pool): the member with the fewest requests in
  flight, another member when one fails before answering; streaming is passed through as the engine's SSE
  bytes (a stream that broke after its first bytes is not retried).
- POST /v1/embeddings: all-MiniLM-L6-v2 in this process (float or base64 encoding).
- RAG: add `"rag": {"collection": "docs", "k": 4, "hybrid": false}` to the body, or name the model
  `tiny+rag:docs`. The last user message is replaced by the prompt template (background first, then the
  question); the response carries `citations` ([1], [2] -> chunk and document) and, per choice, `cited`.
  When streaming, the citations come in a first chunk with no choices.
- Keys: once any key exists (`preflab apikey create NAME`), every /v1 call needs `Authorization: Bearer KEY`;
  on a server listening beyond localhost, always (create a key first).
- Errors are OpenAI-shaped: {"error": {"message", "type", "param", "code"}}; 400 bad body, 401 bad key,
  404 unknown model, 502 engine unreachable.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from db import apikeys, models_registry
from db.errors import NotFoundError, PrefLabError
from db.store import Store

log = logging.getLogger(__name__)

router = APIRouter(tags=["openai-compatible gateway"])

EMBEDDING_MODELS = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "minilm")
RAG_SUFFIX = "+rag:"
ENGINE_TIMEOUT = httpx.Timeout(600.0, connect=5.0)  # long generations on CPU; connect fails fast
MAX_EMBED_INPUTS = 2048


def oai_error(
    status: int, message: str, *, param: str | None = None, code: str | None = None, type_: str | None = None
) -> JSONResponse:
    kind = type_ or {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "invalid_request_error",
        429: "rate_limit_error",
    }.get(status, "api_error")
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status
    )


class GatewayError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def response(self) -> JSONResponse:
        return oai_error(self.status, self.message, param=self.param, code=self.code)


def _store(request: Request) -> Store:
    return request.app.state.store


def _check_key(request: Request) -> None:
    store = _store(request)
    if not apikeys.keys_required(store, public=request.app.state.config.public):
        return
    header = request.headers.get("authorization") or ""
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise GatewayError(
            401,
            "missing API key: send 'Authorization: Bearer <key>' (preflab apikey create NAME)",
            code="invalid_api_key",
        )
    if apikeys.check_key(store, key.strip()) is None:
        raise GatewayError(401, "incorrect or revoked API key", code="invalid_api_key")


async def _body(request: Request) -> dict:
    raw = await request.body()
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GatewayError(400, f"the request body is not valid JSON: {e}", param="body") from e
    if not isinstance(body, dict):
        raise GatewayError(400, "the request body must be a JSON object", param="body")
    return body


def _model_field(body: dict) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise GatewayError(400, "'model' is required: a model name from GET /v1/models", param="model")
    return model.strip()


def _rag_options(body: dict, model: str) -> tuple[str, dict | None]:
    """(model without a +rag: suffix, rag options or None)."""
    rag = body.pop("rag", None)
    if RAG_SUFFIX in model:
        model, collection = model.split(RAG_SUFFIX, 1)
        rag = {**(rag or {}), "collection": collection}
    if rag is None:
        return model, None
    if not isinstance(rag, dict) or not isinstance(rag.get("collection"), str):
        raise GatewayError(400, '\'rag\' must be an object like {"collection": "docs", "k": 4}', param="rag")
    k = rag.get("k", 4)
    if not isinstance(k, int) or not 1 <= k <= 50:
        raise GatewayError(400, "'rag.k' must be an integer from 1 to 50", param="rag.k")
    return model, {
        "collection": rag["collection"],
        "k": k,
        "hybrid": bool(rag.get("hybrid", False)),
        "template": rag.get("template"),
    }


async def _augment(store: Store, rag: dict, question: str) -> tuple[str, list[dict]]:
    from serving.rag.augment import DEFAULT_TEMPLATE, augment
    from serving.rag.retrieve import retrieve

    try:
        hits = await asyncio.to_thread(retrieve, store, rag["collection"], question, k=rag["k"], hybrid=rag["hybrid"])
        return augment(question, hits, template=rag["template"] or DEFAULT_TEMPLATE)
    except NotFoundError as e:
        raise GatewayError(404, str(e), param="rag.collection", code="collection_not_found") from e
    except ValueError as e:
        raise GatewayError(400, str(e), param="rag") from e


async def _resolve(model: str, store: Store) -> list[dict]:
    from serving.engines.registry import resolve_pool

    try:
        return await asyncio.to_thread(resolve_pool, model)
    except NotFoundError as e:
        registered = {r["name"] for r in models_registry.model_cards(store)}
        hint = (
            (
                " It is registered as an adapter but no running engine has it loaded: "
                f"preflab engine start --model BASE --lora {model}=PATH"
            )
            if model in registered
            else ""
        )
        raise GatewayError(
            404,
            f"The model '{model}' does not exist or is not served. {e}{hint}",
            param="model",
            code="model_not_found",
        ) from e


def _engine_error(r_status: int, text: str) -> GatewayError:
    try:
        err = json.loads(text).get("error") or {}
        message = err.get("message") if isinstance(err, dict) else str(err)
        param = err.get("param") or err.get("field") if isinstance(err, dict) else None
    except (ValueError, AttributeError):
        message, param = text[:500], None
    status = r_status if r_status in (400, 404, 422) else 502
    return GatewayError(400 if status == 422 else status, f"engine: {message or text[:500]}", param=param)


async def _forward(request: Request, path: str, chat: bool) -> JSONResponse | StreamingResponse:
    _check_key(request)
    body = await _body(request)
    model, rag = _rag_options(body, _model_field(body))
    citations: list[dict] | None = None
    if chat:
        messages = body.get("messages")
        if (
            not isinstance(messages, list)
            or not messages
            or not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages)
        ):
            raise GatewayError(400, "'messages' must be a non-empty list of {role, content}", param="messages")
        if rag:
            last = messages[-1]
            if last.get("role") != "user" or not isinstance(last.get("content"), str):
                raise GatewayError(
                    400, "with 'rag' the last message must be a user message with text content", param="messages"
                )
            content, citations = await _augment(_store(request), rag, last["content"])
            body["messages"] = [*messages[:-1], {**last, "content": content}]
    elif rag:
        if not isinstance(body.get("prompt"), str):
            raise GatewayError(400, "with 'rag' the prompt must be one string", param="prompt")
        body["prompt"], citations = await _augment(_store(request), rag, body["prompt"])
    from serving.engines.pool import EnginePool, PoolError

    targets = await _resolve(model, _store(request))
    body["model"] = targets[0]["model"]
    pool = EnginePool(targets, timeout=ENGINE_TIMEOUT)
    stream = bool(body.get("stream"))
    try:
        member, resp = await pool.send(path.lstrip("/"), body, attempts=len(targets) + 1, backoff_s=0.25,
                                       stream=stream)  # fmt: skip
    except PoolError as e:
        await pool.aclose()
        names = ", ".join(f"'{t['engine']}' at {t['url']}" for t in targets)
        raise GatewayError(
            502, f"no engine serving '{model}' answered ({names}): {e}", param="model", code="engine_unavailable"
        ) from e
    if stream:
        if resp.status_code >= 400:
            text = (await resp.aread()).decode("utf-8", "replace")
            await _close(resp, pool, member)
            raise _engine_error(resp.status_code, text)
        return StreamingResponse(
            _passthrough(resp, citations, model),
            media_type="text/event-stream",
            background=BackgroundTask(_close, resp, pool, member),
        )
    await pool.aclose()
    if resp.status_code >= 400:
        raise _engine_error(resp.status_code, resp.text)
    data = resp.json()
    data["model"] = model
    if citations is not None:
        from serving.rag.augment import cited_indices

        data["citations"] = citations
        for ch in data.get("choices", []):
            text = (ch.get("message") or {}).get("content") if chat else ch.get("text")
            ch["cited"] = cited_indices(text or "", len(citations))
    return JSONResponse(data)


async def _passthrough(resp: httpx.Response, citations: list[dict] | None, model: str):
    if citations is not None:
        head = {
            "id": "rag-citations",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [],
            "citations": citations,
        }
        yield f"data: {json.dumps(head, ensure_ascii=False)}\n\n".encode()
    async for chunk in resp.aiter_raw():
        yield chunk


async def _close(resp: httpx.Response, pool, member: dict) -> None:
    """A stream is over: close it and count its member's request as done."""
    await resp.aclose()
    pool.release(member)
    await pool.aclose()


def _guard(handler):
    """Turn GatewayError and user errors into OpenAI-shaped responses (not the /api error shape)."""
    import functools

    @functools.wraps(handler)
    async def wrapped(request: Request):
        try:
            return await handler(request)
        except GatewayError as e:
            return e.response()
        except NotFoundError as e:
            return oai_error(404, str(e), code="not_found")
        except PrefLabError as e:
            return oai_error(400, str(e))

    return wrapped


@router.post("/v1/chat/completions")
@_guard
async def chat_completions(request: Request):
    return await _forward(request, "/chat/completions", chat=True)


@router.post("/v1/completions")
@_guard
async def completions(request: Request):
    return await _forward(request, "/completions", chat=False)


@router.get("/v1/models")
@_guard
async def list_models(request: Request):
    from serving.engines.registry import list_engines

    _check_key(request)
    now = int(time.time())
    seen: dict[str, dict] = {}
    for e in await asyncio.to_thread(list_engines):
        if e["backend"] != "external" and not e["alive"]:
            continue
        for m in e["models"]:
            seen.setdefault(
                m, {"id": m, "object": "model", "created": now, "owned_by": f"engine:{e['name']}", "served": True}
            )
    for row in models_registry.model_cards(_store(request)):
        seen.setdefault(
            row["name"],
            {
                "id": row["name"],
                "object": "model",
                "created": int(row["created"] or now),
                "owned_by": "preflab",
                "root": row["base"],
                "kind": row["kind"],
                "served": False,
            },
        )
    seen[EMBEDDING_MODELS[0]] = {
        "id": EMBEDDING_MODELS[0],
        "object": "model",
        "created": now,
        "owned_by": "preflab:embeddings",
    }
    return JSONResponse({"object": "list", "data": list(seen.values())})


@router.post("/v1/embeddings")
@_guard
async def embeddings(request: Request):
    _check_key(request)
    body = await _body(request)
    model = _model_field(body)
    if model not in EMBEDDING_MODELS:
        raise GatewayError(
            404,
            f"The model '{model}' does not exist for embeddings; use '{EMBEDDING_MODELS[0]}'",
            param="model",
            code="model_not_found",
        )
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
        raise GatewayError(
            400,
            "'input' must be a string or a non-empty list of strings (token arrays are not supported)",
            param="input",
        )
    if len(inputs) > MAX_EMBED_INPUTS:
        raise GatewayError(400, f"at most {MAX_EMBED_INPUTS} inputs per request", param="input")
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise GatewayError(400, "'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    from serving.rag import embed

    vectors = await asyncio.to_thread(embed.embed_texts, inputs)
    tokens = await asyncio.to_thread(embed.count_tokens, inputs)
    data = []
    for i, v in enumerate(vectors):
        value = base64.b64encode(v.astype("<f4").tobytes()).decode() if fmt == "base64" else v.tolist()
        data.append({"object": "embedding", "index": i, "embedding": value})
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": EMBEDDING_MODELS[0],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )
