"""The engine registry: a JSON state file (engines.json under db.paths.home()) naming every engine.

One record per engine:

    {"name": "tiny", "backend": "vllm" | "transformers" | "external", "url": "http://127.0.0.1:8001/v1",
     "model": "tiny", "model_path": "/abs/tiny", "loras": {"sft1": "/abs/adapter"}, "pid": 1234,
     "log": "/abs/.preflab/engines/tiny.log", "api_key_env": null, "started_at": "2026-...",
     "runtime_lora": true, "load_finished_runs": false}

`loras` changes while an engine serves (launcher.load_adapter / unload_adapter); everything that lists models
(the gateway's /v1/models, the arena, resolve_pool) reads it on each call, so a change shows at once.

`url` always ends in /v1 (what OpenAI clients take as base_url). Local engines list their models
(the base name plus one per LoRA adapter); external ones are asked for /v1/models when resolving.
Every record that serves a model name is a member of that name's pool (`resolve_pool`): start a second
engine with `--served-name` equal to the first's model name, or register an external URL that lists it.
Writers hold an flock on engines.lock, so two CLI invocations cannot lose each other's records.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from db import paths
from serving.engines.errors import ModelNotFoundError

log = logging.getLogger(__name__)

STATE_FILE = "engines.json"


def state_path() -> Path:
    return paths.home() / STATE_FILE


def _read() -> dict[str, dict]:
    path = state_path()
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("engines", {})
    except json.JSONDecodeError as e:
        raise ModelNotFoundError(f"{path}: not valid JSON ({e}); delete it and start the engines again") from e


@contextmanager
def _locked():
    """Exclusive access for read-modify-write of the state file."""
    lock = paths.home() / "engines.lock"
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write(engines: dict[str, dict]) -> None:
    path = state_path()
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"engines": engines}, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)  # atomic: a reader never sees half a file


def save_engine(record: dict) -> None:
    """Add or replace the record named record['name']."""
    with _locked():
        engines = _read()
        engines[record["name"]] = record
        _write(engines)


def remove_engine(name: str) -> dict | None:
    """Drop a record; returns it (None if there was none)."""
    with _locked():
        engines = _read()
        record = engines.pop(name, None)
        _write(engines)
        return record


def pid_alive(pid: int | None) -> bool:
    """Whether process `pid` (an engine, a training job) still runs. A child of this process that exited is
    reaped here; any other exited process that waits to be reaped (a zombie) counts as gone."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:  # not our child: read its state
        pass
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def served_models(record: dict) -> list[str]:
    """Model names a local engine answers to: the base model, then its adapters."""
    return [record["model"], *record.get("loras", {})] if record.get("model") else list(record.get("loras", {}))


def hot_loadable(record: dict) -> bool:
    """Whether a local engine can load an adapter while serving: the transformers engine always; vLLM when it
    was started with LoRA on (older records without the flag: when they serve adapters)."""
    if record["backend"] == "transformers":
        return True
    return record["backend"] == "vllm" and bool(record.get("runtime_lora", record.get("loras")))


def add_lora(engine: str, name: str, path: str) -> dict:
    """Record that ENGINE now serves adapter NAME from PATH; returns the record."""
    with _locked():
        engines = _read()
        if engine not in engines:
            raise ModelNotFoundError(f"no engine named '{engine}'")
        engines[engine].setdefault("loras", {})[name] = path
        _write(engines)
        return dict(engines[engine])


def remove_lora(engine: str, name: str) -> dict:
    """Record that ENGINE no longer serves adapter NAME; returns the record."""
    with _locked():
        engines = _read()
        if engine not in engines:
            raise ModelNotFoundError(f"no engine named '{engine}'")
        engines[engine].get("loras", {}).pop(name, None)
        _write(engines)
        return dict(engines[engine])


def engine_models(name: str) -> dict:
    """What one engine serves now: {"engine", "models", "live"}. A running engine (or an external one) is asked
    for /v1/models (live True); when it does not answer, the names recorded for it (live False)."""
    record = get_engine(name)
    recorded = served_models(record) if record["backend"] != "external" else record.get("models", [])
    if record["backend"] != "external" and not pid_alive(record.get("pid")):
        return {"engine": name, "models": recorded, "live": False}
    try:
        return {"engine": name, "models": fetch_models(record["url"], api_key(record), timeout=2.0), "live": True}
    except (httpx.HTTPError, ValueError) as e:
        log.warning("engine %s at %s did not answer /models: %s", name, record["url"], e)
        return {"engine": name, "models": recorded, "live": False}


def get_engine(name: str) -> dict:
    engines = _read()
    if name not in engines:
        raise ModelNotFoundError(f"no engine named '{name}' (known: {', '.join(sorted(engines)) or 'none'})")
    return dict(engines[name])


def list_engines(states: bool = True) -> list[dict]:
    """Every registered engine with `alive` (local: the process exists; external: None = not checked)
    and `models` (the names it serves; external engines: as last seen, maybe empty). With `states`, also
    its pool state (serving.engines.pool.member_state): `state` ("healthy" or "out"; a local engine whose
    process is gone is "out"), `outstanding` (requests in flight), `error` and `since` (when it went out)."""
    from serving.engines.pool import member_state

    out = []
    for record in _read().values():
        r = dict(record)
        r["alive"] = pid_alive(r.get("pid")) if r["backend"] != "external" else None
        r["models"] = served_models(r) if r["backend"] != "external" else r.get("models", [])
        if states:
            r.update(member_state(r))
            if r["alive"] is False:
                r["state"], r["error"] = "out", r["error"] or "process not running"
        out.append(r)
    return sorted(out, key=lambda r: r["name"])


def api_key(record: dict) -> str | None:
    var = record.get("api_key_env")
    return os.environ.get(var) if var else None


def fetch_models(url: str, key: str | None = None, timeout: float = 5.0) -> list[str]:
    """Ask an OpenAI-compatible endpoint which models it serves. Raises httpx.HTTPError when it does not answer,
    ValueError when the URL is unusable or the answer is not an OpenAI model list (both callers catch both)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        r = httpx.get(url.rstrip("/") + "/models", headers=headers, timeout=timeout)
    except httpx.InvalidURL as e:  # not an httpx.HTTPError
        raise ValueError(f"unusable URL {url!r}: {e}") from e
    r.raise_for_status()
    try:
        return [str(m["id"]) for m in r.json().get("data", [])]
    except (AttributeError, KeyError, TypeError) as e:
        raise ValueError(f"{url}/models did not answer an OpenAI model list ({type(e).__name__}: {e})") from e


def as_target(record: dict, model: str) -> dict:
    """A request target for `model` on the engine of `record`: engine, backend, url, api_key, model, adapter,
    base_model (what `resolve_pool` returns per member)."""
    loras = record.get("loras", {})
    return {
        "engine": record["name"],
        "backend": record["backend"],
        "url": record["url"],
        "api_key": api_key(record),
        "model": model,
        "adapter": model if model in loras else None,
        "base_model": record.get("model") if model in loras else model,
    }


def _external_serves(record: dict, model_name: str) -> bool:
    """Whether an external endpoint lists `model_name` in /v1/models (asked at most every EXTERNAL_TTL s)."""
    key = (record["name"], record["url"])
    hit = _external_cache.get(key)
    if hit is None or time.monotonic() - hit[0] > EXTERNAL_TTL:
        try:
            hit = (time.monotonic(), fetch_models(record["url"], api_key(record)))
        except (httpx.HTTPError, ValueError) as e:
            log.warning("external engine %s at %s did not answer /models: %s", record["name"], record["url"], e)
            hit = (time.monotonic(), None)
        _external_cache[key] = hit
    return hit[1] is not None and model_name in hit[1]


EXTERNAL_TTL = 10.0  # seconds a /v1/models answer of an external endpoint is trusted
_external_cache: dict[tuple[str, str], tuple[float, list[str] | None]] = {}


def resolve_pool(model_name: str, engine: str | None = None) -> list[dict]:
    """Every engine that serves `model_name`, as targets (see `resolve_model`): the pool the sampler and the
    gateway spread requests over (serving.engines.pool). Local engines that are alive come first, then
    external endpoints whose /v1/models lists the name. With `engine` given, that engine alone (an external
    endpoint may serve any name). Raises ModelNotFoundError listing what is served.
    """
    if engine is not None:
        return [as_target(get_engine(engine), model_name)]
    engines = list_engines(states=False)
    members = [as_target(r, model_name) for r in engines
               if r["backend"] != "external" and r["alive"] and model_name in r["models"]]  # fmt: skip
    members += [as_target(r, model_name) for r in engines
                if r["backend"] == "external" and _external_serves(r, model_name)]  # fmt: skip
    if members:
        return members
    served = sorted({m for r in engines if r["backend"] == "external" or r["alive"] for m in r["models"]})
    dead = [r["name"] for r in engines if r["alive"] is False and model_name in r["models"]]
    hint = f"; engine(s) {', '.join(dead)} serve it but are not running (preflab engine start ...)" if dead else ""
    raise ModelNotFoundError(
        f"no running engine serves model '{model_name}' (served: {', '.join(served) or 'none'}){hint}"
    )


def resolve_model(model_name: str, engine: str | None = None) -> dict:
    """Where to send a request for `model_name`: dict(engine, backend, url, api_key, model, adapter, base_model),
    the first member of `resolve_pool` (callers that send requests use the whole pool).

    `url` is the /v1 base URL. Raises ModelNotFoundError listing what is served.
    """
    return resolve_pool(model_name, engine)[0]
