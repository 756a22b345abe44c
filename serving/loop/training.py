"""The loop's training step: DPO from the current policy, or a reward model and then PPO (RLOO, GRPO) with it.

Each stage is a training run like any other (alignment.launch.register_run, then serving.jobs.start_run): the
same run row, config resolution, RUN_DIR/train.log and end recording (the adapter is registered as a model with
its lineage) as `preflab train` and POST /api/runs. The job runs under the loop's job runner: the server's, when
the server runs the loop, so a stopping server stops it; a cancelled loop cancels it; it never outlives the loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from db import runs
from db.errors import PrefLabError
from db.store import Store
from serving.jobs import JOIN_MARGIN_S, Job, JobRunner, ShuttingDownError, start_run
from serving.loop.config import LoopConfig

CREATED_BY = "preflab-loop"


def train_policy(
    store: Store,
    runner: JobRunner,
    cfg: LoopConfig,
    *,
    snap: dict,
    parent_path: str | None,
    round_dir: Path,
    child: str,
    cancel: threading.Event,
    step: Callable[[str], None],
) -> dict:
    """DPO from the policy (`parent_path`, None: the base model); or a reward model, then PPO, RLOO or GRPO with
    it. The new adapter is registered as `child`. Returns the run's stage, id, folder, adapter, metrics file and
    final metrics (with a reward model, also its run's under "reward_model"), and the seconds it took."""
    t0 = time.perf_counter()
    common = {
        "base": str(Path(cfg.base_model).resolve()),
        "data": snap["path"],
        "snapshot_id": snap["snapshot_id"],
        "snapshot_origin": {"dataset": snap.get("dataset"), "format": "trl", "loop": cfg.name},
        "per_device_train_batch_size": cfg.batch_size,
        "lora_r": cfg.lora_r,
        "lora_alpha": 2 * cfg.lora_r,
        "logging_steps": 1,
        "save_strategy": "no",
        "seed": cfg.seed,
        "report_to": [],
        "activation_checkpointing": False,
    }  # recomputation only costs time on models this small

    def stage(name: str, run_dir: Path, values: dict, model_name: str) -> dict:
        return train_stage(
            store, runner, name, run_dir, values, model_name, threads=cfg.threads, cancel=cancel, step=step
        )

    if cfg.method == "dpo":
        values = {
            **common,
            "adapter": parent_path,
            "learning_rate": cfg.learning_rate,
            "num_train_epochs": cfg.epochs,
            "max_steps": cfg.max_steps,
            "beta": cfg.beta,
            "max_length": 256,
        }
        return {**stage("dpo", round_dir / "dpo", values, child), "seconds": time.perf_counter() - t0}
    rm_values = {
        **common,
        "learning_rate": cfg.rm_learning_rate,
        "num_train_epochs": cfg.rm_epochs,
        "max_steps": cfg.rm_max_steps,
        "max_length": 256,
        "eval_fraction": 0.1,  # held-out pairs: alignment.reward_eval scores the reward model on them
    }
    rm = stage("reward", round_dir / "reward", rm_values, f"{child}-rm")
    online_values = {
        **common,
        "adapter": parent_path,
        "reward_model": rm["adapter"],
        "learning_rate": cfg.ppo_learning_rate,
        "max_steps": cfg.ppo_max_steps,
        "max_completion_length": cfg.max_tokens,
        "temperature": cfg.temperature,
    }
    if cfg.kl_coef is not None:
        online_values["kl_coef" if cfg.method == "ppo" else "beta"] = cfg.kl_coef
    if cfg.method in ("rloo", "grpo"):  # TRL's trainers: n samples per prompt, scored against each other
        online_values["num_generations"] = cfg.n
        online_values["per_device_train_batch_size"] = cfg.batch_size - cfg.batch_size % cfg.n or cfg.n
    run = stage(cfg.method, round_dir / cfg.method, online_values, child)
    return {**run, "reward_model": rm, "seconds": time.perf_counter() - t0}


def train_stage(
    store: Store,
    runner: JobRunner,
    stage: str,
    run_dir: Path,
    values: dict,
    model_name: str,
    *,
    threads: int,
    cancel: threading.Event,
    step: Callable[[str], None],
) -> dict:
    """One training run in `run_dir`, waited for; its adapter is registered as `model_name` (or model_name-2, ...).
    Raises PrefLabError, with the tail of train.log, when the run does not finish."""
    from alignment.launch import register_run, resolve_model_path, resolve_model_ref
    from alignment.runs import LOG, METRICS, read_result, tail_log

    step(f"{stage} in {run_dir}")
    values = {k: v for k, v in values.items() if v is not None}
    values["base"] = resolve_model_path(store, values["base"])
    for key in ("adapter", "reward_model"):
        if key in values:
            values[key] = resolve_model_ref(store, values[key])
    run_id, _ = register_run(
        store,
        stage,
        run_dir,
        values=values,
        created_by=CREATED_BY,
        parent=values.get("adapter"),
        model_name=model_name,
        threads=threads,
    )
    try:
        job = start_run(runner, store, run_id)
    except ShuttingDownError as e:
        runs.mark_done(store, run_id, "failed", error=str(e))
        raise PrefLabError(f"{stage}: {e}") from e
    wait_for_run(runner, job, cancel)
    if cancel.is_set():
        raise PrefLabError("the loop was cancelled")
    status = runs.get_run(store, run_id)["status"]
    result = read_result(run_dir) or {}
    if status != "finished":
        raise PrefLabError(f"{stage} training {status}; log {run_dir / LOG}:\n{tail_log(run_dir, lines=20)}")
    return {
        "stage": stage,
        "run_id": run_id,
        "run_dir": str(run_dir),
        "adapter": result["adapter"],
        "metrics": str(run_dir / METRICS),
        "final": result.get("metrics", {}),
    }


def wait_for_run(runner: JobRunner, job: Job, cancel: threading.Event) -> None:
    """Wait until the run's job has ended and its end is recorded; a cancelled loop cancels the job first."""
    try:
        while not job.wait(0.5):
            if cancel.is_set():
                runner.cancel(job.kind, job.key)
    finally:  # Ctrl-C or an error here: the job must not outlive the loop
        if job.alive:
            runner.cancel(job.kind, job.key)
            job.wait(job.grace + JOIN_MARGIN_S)
