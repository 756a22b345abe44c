"""Serve a registered adapter (db.models_registry) so sampling and the arena can pick it, with no command line.

    serve_registered_adapter(store, "dpo-run3")            # -> {"model", "engine", "action", "models"}
    serve_registered_adapter(store, "dpo-run3", engine="tiny")
    check_adapter_path("runs/3/adapter")                   # -> resolved folder, or InputError (field "path")
    load_finished_run(store, run_id)                       # after a run finishes: into engines that asked

Order: an engine that already serves the name -> nothing to do; a running local engine on the adapter's
base that can load adapters while serving (launcher.load_adapter: the transformers engine, or vLLM started
with LoRA on) -> hot-load; otherwise a transformers engine is started on the base with the adapter, its base
served under the name the base already has, so the arena does not count one model twice.

A folder that comes from a request must resolve (symbolic links followed) inside an adapter root: the project
folder, PREFLAB_HOME, or a folder named in PREFLAB_ADAPTER_ROOT (several separated by the path separator).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from db.errors import ConflictError, InputError
from serving.engines import registry
from serving.engines.errors import EngineError

log = logging.getLogger(__name__)

ADAPTER_ROOT_ENV = "PREFLAB_ADAPTER_ROOT"


def adapter_roots() -> list[Path]:
    """Folders an adapter named in a request may lie in: the project folder, PREFLAB_HOME, PREFLAB_ADAPTER_ROOT."""
    from alignment.launch import project_dir
    from db import paths

    extra = [Path(p) for p in os.environ.get(ADAPTER_ROOT_ENV, "").split(os.pathsep) if p.strip()]
    return [Path(os.path.realpath(p)) for p in (project_dir(), paths.home(), *extra)]


def check_adapter_path(path: str | Path, roots: list[Path] | None = None) -> Path:
    """The real path of adapter folder PATH (relative: to the project folder) if it lies inside one of `roots`
    (default adapter_roots()) and holds adapter_config.json; else InputError on field "path", naming the roots."""
    from alignment.launch import project_dir

    roots = adapter_roots() if roots is None else roots
    given = Path(path).expanduser()
    real = Path(os.path.realpath(given if given.is_absolute() else project_dir() / given))
    if not any(real == r or real.is_relative_to(r) for r in roots):
        raise InputError(
            f"{path} is outside the adapter roots ({', '.join(map(str, roots))}); move it there or add its "
            f"folder to {ADAPTER_ROOT_ENV}",
            field="path",
        )
    if not (real / "adapter_config.json").is_file():
        raise InputError(f"{path} is not a PEFT adapter folder (no adapter_config.json)", field="path")
    return real


def adapter_source(store, name: str) -> tuple[Path, Path]:
    """(adapter folder, base model folder) of registered adapter NAME, both checked. Relative folders resolve
    against the project folder (alignment.launch.project_dir), where training ran from."""
    import json

    from alignment.launch import project_dir
    from db import models_registry

    model = models_registry.get_model(store, name)  # NotFoundError: 404
    if model["kind"] != "adapter":
        raise InputError(f"'{name}' is a {model['kind']} model, not an adapter", field="model")
    adapter = Path(model["path"] or "")
    if not adapter.is_absolute():
        adapter = project_dir() / adapter
    if not (adapter / "adapter_config.json").is_file():
        raise InputError(f"adapter '{name}': {adapter} is not a PEFT adapter folder any more", field="model")
    meta_file = adapter / "preflab_adapter.json"
    meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
    if meta.get("merged_parents"):
        raise ConflictError(
            f"adapter '{name}' was trained on top of merged parent(s) {', '.join(meta['merged_parents'])}: it "
            f"cannot be served on the plain base; merge it (preflab models merge {name} --out DIR) and start an "
            "engine on that folder"
        )
    base = model["base"] or meta.get("base")
    if not base:
        raise InputError(f"adapter '{name}' has no base model recorded", field="model")
    base_path = Path(base)
    if not base_path.is_absolute():
        base_path = project_dir() / base_path
    if not (base_path / "config.json").is_file():
        raise InputError(f"adapter '{name}': its base {base} is not a model folder here", field="model")
    return adapter.resolve(), base_path.resolve()


def serve_registered_adapter(store, name: str, *, engine: str | None = None, timeout: float = 300.0) -> dict:
    """Make registered adapter NAME served; returns {model, engine, action: served|loaded|started, models}."""
    from serving.engines.launcher import load_adapter, start_engine

    adapter, base = adapter_source(store, name)
    engines = [e for e in registry.list_engines() if e["backend"] != "external" and e["alive"]]
    if engine is None:
        serving = next((e for e in engines if name in e["models"]), None)
        if serving:
            return {"model": name, "engine": serving["name"], "action": "served", "models": serving["models"]}
        same_base = [e for e in engines if Path(e.get("model_path") or "") == base]
        target = next((e for e in same_base if registry.hot_loadable(e)), None)
    else:
        target = next((e for e in engines if e["name"] == engine), None)
        if target is None:
            raise ConflictError(f"engine '{engine}' is not a running local engine")
        if name in target["models"]:
            return {"model": name, "engine": engine, "action": "served", "models": target["models"]}
        if Path(target.get("model_path") or "") != base:
            raise InputError(
                f"engine '{engine}' serves {target.get('model_path')}, but adapter '{name}' was trained on {base}",
                field="engine",
            )
        if not registry.hot_loadable(target):
            raise ConflictError(f"engine '{engine}' ({target['backend']}) started without LoRA: it cannot load any")
    if target is not None:
        record = load_adapter(target["name"], name, adapter)
        return {"model": name, "engine": target["name"], "action": "loaded", "models": registry.served_models(record)}
    # nothing on this base can take it: a transformers engine of its own, base served under its usual name
    on_base = next((e for e in engines if Path(e.get("model_path") or "") == base), None)
    served_name = on_base["model"] if on_base else base.name
    running = {e["name"] for e in engines}  # a dead engine's record may be reused (start_engine replaces it)
    engine_name = base.name if base.name not in running else f"{base.name}-{name}"
    try:
        record = start_engine(model=base, name=engine_name, backend="transformers", loras={name: str(adapter)},
                              timeout=timeout, served_name=served_name)  # fmt: skip
    except EngineError:
        log.exception("could not start an engine for adapter %s", name)
        raise
    return {"model": name, "engine": engine_name, "action": "started", "models": registry.served_models(record)}


def load_finished_run(store, run_id: int) -> list[dict]:
    """Load the adapter a finished run registered into every running engine that asked for finished runs
    (`preflab engine start --load-finished-runs`) and serves the run's base model. Returns one
    {engine, model, action: loaded|failed, error?} per such engine; a failure is logged, never raised, so a
    finished run stays finished whatever an engine does."""
    from db import models_registry

    model = models_registry.model_for_run(store, run_id)
    if not model or model["kind"] != "adapter":
        return []
    try:
        adapter, base = adapter_source(store, model["name"])
    except (InputError, ConflictError) as e:
        log.warning("run %s: adapter %s cannot be served: %s", run_id, model["name"], e)
        return []
    from serving.engines.launcher import load_adapter

    out = []
    for e in registry.list_engines(states=False):
        if not (e.get("load_finished_runs") and e["alive"] and Path(e.get("model_path") or "") == base):
            continue
        if model["name"] in e["models"]:
            continue
        try:
            load_adapter(e["name"], model["name"], adapter)
            out.append({"engine": e["name"], "model": model["name"], "action": "loaded"})
        except EngineError as err:
            log.warning("run %s: engine %s did not load adapter %s: %s", run_id, e["name"], model["name"], err)
            out.append({"engine": e["name"], "model": model["name"], "action": "failed", "error": str(err)})
    return out
