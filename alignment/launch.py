"""Starting training jobs: a fresh run directory, the data snapshot it trains on, the run's row, the subprocess.

Used by `preflab train`, the server (serving.api.runs) and the loop (serving.loop), the last two through
serving.jobs.start_run. Training never runs inside the caller's process: `python -m alignment STAGE RUN_DIR` is
started with its output going to RUN_DIR/train.log, and record_end records how it ended. A run whose config asks
for several processes (`processes: N`) or names an accelerate config file starts under `accelerate launch`
instead (job_command): DDP over N processes by default (alignment/configs/ddp.yaml), or whatever the file says.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from alignment.runs import CONFIG, LAUNCHER_ENV, LOG

# The snapshot format each stage reads (conversational, so the model's chat template is applied).
STAGE_FORMATS = {
    "sft": "sft",
    "reward": "trl-messages",
    "dpo": "trl-messages",
    "ppo": "trl-messages",
    "rloo": "trl-messages",
    "grpo": "trl-messages",
    "kto": "kto-messages",  # thumbs up/down, one answer per row
}
EXPORT_FILTERS = ("min_annotators", "min_agreement", "ties", "source", "sft_prefer", "split", "seed")
PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the code; jobs run here so `python -m alignment` imports
CONFIGS = Path(__file__).resolve().parent / "configs"  # accelerate configs shipped with PrefLab
DDP_CONFIG = CONFIGS / "ddp.yaml"  # `processes: N` without a config file: plain DDP (NCCL on GPUs, gloo on CPU)


def project_dir() -> Path:
    """The project folder: the working directory the server (or the CLI) was started in, where `preflab up`
    builds models/tiny and keeps .preflab. Relative model paths a person types resolve against it, never
    against the code folder the training job runs in. Neither the server nor the CLI changes directory."""
    return Path.cwd()


def resolve_model_path(store, value: str | None, *, field: str = "base", root: str | Path | None = None) -> str | None:
    """A base model as the training job must get it, checked before anything starts: a registered model name
    becomes its folder, a folder (relative ones against `root`, default project_dir()) becomes an absolute
    path holding config.json, and a hub id is kept only when it is in the local Hugging Face cache (a job
    must not stall on a download or fail on a connection error minutes later). Raises ConfigError(key=field).
    """
    from alignment.errors import ConfigError
    from db.models_registry import find_model

    if not value:
        return value
    model = find_model(store, value)
    if model:
        if not model["path"]:
            raise ConfigError(f"model '{value}' is registered without a folder ({model['kind']})", key=field)
        folder, what = Path(model["path"]), f"registered model '{value}' ({model['path']})"
    else:
        folder = Path(value).expanduser()
        if not folder.is_absolute():
            folder = Path(root or project_dir()) / folder
        what = f"'{value}' ({folder})" if str(folder) != value else f"'{value}'"
    if (folder / "config.json").is_file():
        return str(folder.resolve())
    if folder.is_dir():
        raise ConfigError(f"{what} is not a model folder: it has no config.json", key=field)
    if not model and _in_hub_cache(value):
        return value
    raise ConfigError(
        f"{what} not found: not a folder (relative paths resolve against the project folder "
        f"{Path(root or project_dir())}), not a registered model name, not in the local Hugging Face cache",
        key=field,
    )


def resolve_model_ref(store, value: str | None, *, root: str | Path | None = None) -> str | None:
    """An adapter or reward model: a registered name becomes its folder, a relative folder that exists in the
    project folder becomes absolute; anything else is left for the config's own checks to report."""
    from db.models_registry import find_model

    if not value:
        return value
    model = find_model(store, value)
    if model and model["path"]:
        return model["path"]
    folder = Path(value).expanduser()
    if not folder.is_absolute() and (Path(root or project_dir()) / folder).exists():
        return str((Path(root or project_dir()) / folder).resolve())
    return value


def _in_hub_cache(repo_id: str) -> bool:
    if repo_id.count("/") > 1 or repo_id.startswith((".", "/", "~")):
        return False
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an id the hub library rejects is simply not cached
        return False


def new_run_dir(stage: str, root: str | Path | None = None) -> Path:
    """PREFLAB_HOME/runs/STAGE-YYYYmmdd-HHMMSS-xxxx (not created)."""
    if root is None:
        from db.paths import home

        root = home() / "runs"
    return Path(root) / f"{stage}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def export_snapshot(store, stage: str, dataset: str, run_dir: str | Path, filters: dict | None = None) -> dict:
    """Export `dataset` into RUN_DIR/data/ in the stage's format (db.export); returns data path, id and origin."""
    from db.errors import InputError
    from db.export import export

    filters = {k: v for k, v in (filters or {}).items() if v is not None}
    unknown = set(filters) - set(EXPORT_FILTERS)
    if unknown:
        raise InputError(
            f"unknown export filter(s) {', '.join(sorted(unknown))}; use {', '.join(EXPORT_FILTERS)}", field="filters"
        )
    fmt = STAGE_FORMATS[stage]
    out = Path(run_dir) / "data" / f"{fmt}.jsonl"
    result = export(store, fmt, out, dataset=dataset, **filters)
    path = result.paths.get("all") or result.paths.get("train")
    if not path or not Path(path).exists() or Path(path).stat().st_size == 0:
        raise InputError(
            f"dataset '{dataset}' exported no {fmt} rows with these filters: nothing to train on", field="dataset"
        )
    origin = {
        "dataset": dataset,
        "format": fmt,
        "filters": filters,
        "counts": result.counts,
        "files": {k: str(v) for k, v in result.paths.items()},
    }
    return {"data": str(path), "snapshot_id": result.snapshot_id, "snapshot_origin": origin}


def register_run(
    store,
    stage: str | None,
    run_dir: str | Path,
    *,
    created_by: str,
    values: dict | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    parent: str | None = None,
    model_name: str | None = None,
    threads: int | None = None,
) -> tuple[int, object]:
    """Validate the config and write RUN_DIR (alignment.job.prepare_run), then record the run as queued with its
    resolved config, the name its adapter is registered under (`model_name`, default STAGE-runID) and the job's torch
    threads. Returns (run id, config). Start it with start_job; record_end registers the adapter."""
    from alignment.config import config_to_dict
    from alignment.job import prepare_run
    from db import runs

    cfg = prepare_run(stage, run_dir, config_file=config_file, values=values, overrides=overrides)
    run_id = runs.create_run(
        store,
        stage=cfg.stage,
        run_dir=str(cfg.output_dir),
        base=cfg.base,
        parent=parent,
        snapshot_id=cfg.snapshot_id,
        config={**config_to_dict(cfg), "model_name": model_name, "threads": threads},
        created_by=created_by,
    )
    return run_id, cfg


def job_env(threads: int | None = None, *, launcher: str = "python") -> dict:
    """The job's environment: torch threads (per process), PrefLab importable, and which launcher started it."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", LAUNCHER_ENV: launcher}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


def free_port() -> int:
    """A TCP port nothing listens on now (the rendezvous port of a one-machine distributed job)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_command(
    run_dir: str | Path,
    stage: str,
    *,
    resume: bool = False,
    python: str | None = None,
    processes: int = 1,
    accelerate_config: str | Path | None = None,
) -> list[str]:
    """The job's command line: `python -m alignment STAGE RUN_DIR`, or with several processes or a config file
    `python -m accelerate.commands.launch --config_file F [--num_processes N] [--main_process_port P] -m alignment
    ...`. N overrides the file's count when above 1. A one-machine job gets a free rendezvous port (MASTER_PORT
    when set) unless its file names one; a file for several machines keeps its own (every machine must agree)."""
    python = python or sys.executable
    job = ["-m", "alignment", stage, str(run_dir), "--no-tee"] + (["--resume"] if resume else [])
    processes = int(processes or 1)
    if processes <= 1 and not accelerate_config:
        return [python, *job]
    config_file = Path(accelerate_config or DDP_CONFIG)
    settings = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    cmd = [python, "-m", "accelerate.commands.launch", "--config_file", str(config_file)]
    if processes > 1:
        cmd += ["--num_processes", str(processes)]
    if int(settings.get("num_machines") or 1) <= 1 and not settings.get("main_process_port"):
        cmd += ["--main_process_port", os.environ.get("MASTER_PORT") or str(free_port())]
    return cmd + job


def run_launch_settings(run_dir: str | Path) -> dict:
    """`processes` and `accelerate_config` from RUN_DIR/config.yaml (1 and None for a run written before them)."""
    try:
        cfg = yaml.safe_load((Path(run_dir) / CONFIG).read_text(encoding="utf-8")) or {}
    except OSError:
        cfg = {}
    return {"processes": int(cfg.get("processes") or 1), "accelerate_config": cfg.get("accelerate_config")}


def start_job(
    run_dir: str | Path, stage: str, *, resume: bool = False, threads: int | None = None, python: str | None = None
) -> subprocess.Popen:
    """Start the run's job (job_command, with the processes and accelerate config its config.yaml names), output
    appended to RUN_DIR/train.log. The job leads its own process group, so a cancel reaches every process."""
    run_dir = Path(run_dir)
    cmd = job_command(run_dir, stage, resume=resume, python=python, **run_launch_settings(run_dir))
    launcher = "python" if cmd[1:3] == ["-m", "alignment"] else "accelerate"
    with (run_dir / LOG).open("ab") as log_file:
        return subprocess.Popen(
            cmd,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(PROJECT_ROOT),
            env=job_env(threads, launcher=launcher),
            start_new_session=True,
        )


def record_end(store, row: dict, *, cancelled: bool = False, exit_code: int | None = None) -> str:
    """Record how a run ended, from its result.json, and register a finished adapter as a model (with its lineage:
    base, parent, run, snapshot). One path for the CLI (`preflab train`, `runs cancel/resume`, reconcile) and the
    server's watcher. A non-zero `exit_code` means failed whatever result.json says. Returns the status."""
    from alignment.runs import final_metrics, read_result, tail_log
    from db import models_registry, runs

    result = read_result(row["run_dir"]) or {}
    status = result.get("status") or "failed"
    if exit_code not in (None, 0) and status == "finished":
        status = "failed"
    if cancelled and status != "finished":
        status = "cancelled"
    if status == "finished":
        metrics = result.get("metrics") or final_metrics(row["run_dir"])
        runs.mark_done(store, row["id"], "finished", metrics=metrics)
        if not models_registry.model_for_run(store, row["id"]):
            name = (row.get("config") or {}).get("model_name") or f"{row['stage']}-run{row['id']}"
            models_registry.register_model(
                store,
                name=models_registry.unique_name(store, name),
                kind="adapter",
                base=row["base"],
                path=result.get("adapter"),
                stage=row["stage"],
                parent=row["parent"],
                run_id=row["id"],
                snapshot_id=row["snapshot_id"],
                metrics=metrics,
                created_by=row["created_by"],
            )
    elif status == "cancelled":
        runs.mark_done(store, row["id"], "cancelled", metrics=final_metrics(row["run_dir"]))
    else:
        code = f"exit code {exit_code}\n" if exit_code not in (None, 0) else ""
        error = code + (result.get("error") or "") + "\n" + tail_log(row["run_dir"], lines=30)
        runs.mark_done(store, row["id"], "failed", error=error[-8000:])
    return status
