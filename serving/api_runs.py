"""Training runs (admin): launch `python -m alignment` subprocesses, watch them, cancel, resume, register adapters.

    POST /api/runs                    {stage, base, adapter?, dataset? + filters? | data?, config?, name?}
    GET  /api/runs                    newest first
    GET  /api/runs/{id}               the row + result.json + lineage (snapshot -> run -> adapter model)
    GET  /api/runs/{id}/metrics?since=N   metrics.jsonl records from line N
    GET  /api/runs/{id}/log?lines=N   the tail of train.log
    POST /api/runs/{id}/cancel        SIGTERM (the job checkpoints and stops), SIGKILL after a grace period
    POST /api/runs/{id}/resume        start again from the last checkpoint

Training never runs in the server process. A watcher thread per run waits for its process; when it ends the
row becomes finished (and the adapter is registered as a model), cancelled, or failed with the log's tail.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from db import models_registry, runs
from db.store import Store
from serving.deps import ApiError, get_store, require_role
from serving.engines.registry import pid_alive

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["training runs"])
CANCEL_GRACE_S = 30.0


class RunIn(BaseModel):
    stage: str = Field(pattern="^(sft|reward|ppo|rloo|grpo|dpo)$")
    base: str = Field(min_length=1, max_length=1000)
    adapter: str | None = Field(default=None, max_length=1000, description="parent adapter: model name or folder")
    dataset: str | None = Field(default=None, max_length=256)
    filters: dict = Field(default_factory=dict, description="export filters: min_annotators, min_agreement, ...")
    data: str | None = Field(default=None, max_length=1000, description="an existing snapshot file instead")
    config: dict = Field(default_factory=dict, description="hyperparameters: any key of the stage's config")
    name: str | None = Field(default=None, max_length=200, description="model name for the finished adapter")
    reward_model: str | None = Field(default=None, max_length=1000)
    threads: int | None = Field(default=None, ge=1, le=256)


class RunManager:
    """The server's training subprocesses: start, watch, cancel, resume."""

    def __init__(self, store: Store):
        self.store = store
        self.procs: dict[int, object] = {}
        self.cancelling: set[int] = set()
        self._lock = threading.Lock()
        for row in runs.active_runs(store):  # a restart lost those processes: say so
            if pid_alive(row["pid"]):  # started by `preflab train --background`: still going
                continue
            runs.mark_done(
                store,
                row["id"],
                "failed",
                error="the server restarted while the run was active; resume it to continue from its last checkpoint",
            )

    def create(self, body: RunIn, created_by: str) -> int:
        from alignment.errors import ConfigError
        from alignment.job import prepare_run
        from alignment.launch import export_snapshot, new_run_dir, resolve_model_path, resolve_model_ref

        if not body.dataset and not body.data:
            raise ApiError(422, "give a dataset (exported now) or data (an existing snapshot file)", field="dataset")
        try:  # checked here, so a missing model is one line now, not a failed job (or a hub download) later
            base = resolve_model_path(self.store, body.base, field="base")
        except ConfigError as e:
            raise ApiError(400, f"base model {e}".replace("key 'base': ", ""), field="base") from None
        run_dir = new_run_dir(body.stage)
        values = {
            **body.config,
            "base": base,
            "adapter": resolve_model_ref(self.store, body.adapter),
        }
        if body.reward_model:
            values["reward_model"] = resolve_model_ref(self.store, body.reward_model)
        values = {k: v for k, v in values.items() if v is not None}
        if body.dataset:
            from alignment.config import load_config

            # validate before exporting anything: a bad key costs no snapshot
            load_config(stage=body.stage, values={**values, "data": "(export)", "output_dir": str(run_dir)})
            self.store.dataset_id(body.dataset)
            values.update(export_snapshot(self.store, body.stage, body.dataset, run_dir, body.filters))
        else:
            values["data"] = body.data
        cfg = prepare_run(body.stage, run_dir, values=values)
        from alignment.config import config_to_dict

        config = config_to_dict(cfg)
        config["model_name"] = body.name
        config["threads"] = body.threads
        run_id = runs.create_run(
            self.store,
            stage=body.stage,
            run_dir=str(run_dir),
            base=cfg.base,
            parent=body.adapter,
            snapshot_id=cfg.snapshot_id,
            config=config,
            created_by=created_by,
        )
        self.launch(run_id)
        return run_id

    def launch(self, run_id: int, *, resume: bool = False) -> None:
        from alignment.launch import start_job

        row = runs.get_run(self.store, run_id)
        with self._lock:
            if run_id in self.procs:
                raise ApiError(409, f"run {run_id} is already running", field="run_id")
            proc = start_job(row["run_dir"], row["stage"], resume=resume, threads=(row["config"] or {}).get("threads"))
            self.procs[run_id] = proc
        runs.mark_running(self.store, run_id, proc.pid)
        threading.Thread(target=self._watch, args=(run_id, proc), name=f"run-{run_id}", daemon=True).start()

    def _watch(self, run_id: int, proc) -> None:
        from alignment.launch import record_end

        code = proc.wait()
        with self._lock:
            self.procs.pop(run_id, None)
            cancelled = run_id in self.cancelling
            self.cancelling.discard(run_id)
        try:
            record_end(self.store, runs.get_run(self.store, run_id), cancelled=cancelled, exit_code=code)
        except Exception:  # a watcher must never take the server down
            log.exception("recording the end of run %s failed", run_id)

    def reconcile(self) -> None:
        """Runs this server did not start (`preflab train --background`) whose process has ended: record the end."""
        from alignment.launch import record_end

        for row in runs.active_runs(self.store):
            if row["id"] not in self.procs and row["status"] == "running" and not pid_alive(row["pid"]):
                record_end(self.store, row)

    def cancel(self, run_id: int) -> None:
        with self._lock:
            proc = self.procs.get(run_id)
            if proc is None:
                raise ApiError(409, f"run {run_id} is not running", field="run_id")
            self.cancelling.add(run_id)
        stop_process(proc, CANCEL_GRACE_S)

    def shutdown(self) -> None:
        for run_id in list(self.procs):
            try:
                self.cancel(run_id)
            except ApiError:
                pass


def stop_process(proc, grace: float) -> None:
    """SIGTERM now (the job saves a checkpoint and exits); SIGKILL if it is still alive after `grace` s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        proc.terminate()

    def _kill_later():
        try:
            proc.wait(timeout=grace)
        except Exception:  # subprocess.TimeoutExpired: still running
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    threading.Thread(target=_kill_later, daemon=True).start()


def _manager(request: Request) -> RunManager:
    state = request.app.state
    if getattr(state, "runs", None) is None:
        state.runs = RunManager(get_store(request))
    return state.runs


def _view(store: Store, run_id: int) -> dict:
    from alignment.runs import read_result

    row = runs.get_run(store, run_id)
    row["result"] = read_result(row["run_dir"]) if Path(row["run_dir"]).exists() else None
    model = models_registry.model_for_run(store, run_id)
    row["lineage"] = {
        "snapshot_id": row["snapshot_id"],
        "run_id": run_id,
        "parent": row["parent"],
        "model": model["name"] if model else None,
        "adapter": model["path"] if model else None,
    }
    return row


@router.post("/runs", status_code=201)
def create_run(
    body: RunIn, request: Request, store: Store = Depends(get_store), admin: dict = Depends(require_role("admin"))
) -> dict:
    """Export the data snapshot (when a dataset is given), write the run directory, start the job."""
    from alignment.errors import ConfigError, DataError

    try:
        run_id = _manager(request).create(body, admin["name"])
    except ConfigError as e:  # the config names the key at fault
        raise ApiError(422, str(e), field=e.key) from None
    except DataError as e:
        raise ApiError(422, str(e), field="data") from None
    return _view(store, run_id)


@router.get("/runs")
def list_runs(
    request: Request,
    status: str | None = Query(None, max_length=20),
    store: Store = Depends(get_store),
    admin: dict = Depends(require_role("admin")),
) -> list[dict]:
    _manager(request).reconcile()
    return runs.list_runs(store, status=status)


@router.get("/runs/{run_id}")
def get_run(run_id: int, store: Store = Depends(get_store), admin: dict = Depends(require_role("admin"))) -> dict:
    return _view(store, run_id)


@router.get("/runs/{run_id}/metrics")
def run_metrics(
    run_id: int,
    since: int = Query(0, ge=0),
    store: Store = Depends(get_store),
    admin: dict = Depends(require_role("admin")),
) -> dict:
    """metrics.jsonl from line `since`; `next` is the line to ask from next time."""
    from alignment.runs import read_metrics

    records = read_metrics(runs.get_run(store, run_id)["run_dir"], since_line=since)
    return {"records": records, "next": since + len(records)}


@router.get("/runs/{run_id}/log")
def run_log(
    run_id: int,
    lines: int = Query(100, ge=1, le=5000),
    store: Store = Depends(get_store),
    admin: dict = Depends(require_role("admin")),
) -> dict:
    from alignment.runs import tail_log

    return {"log": tail_log(runs.get_run(store, run_id)["run_dir"], lines=lines)}


@router.post("/runs/{run_id}/cancel")
def cancel_run(
    run_id: int, request: Request, store: Store = Depends(get_store), admin: dict = Depends(require_role("admin"))
) -> dict:
    runs.get_run(store, run_id)
    _manager(request).cancel(run_id)
    return _view(store, run_id)


@router.post("/runs/{run_id}/resume")
def resume_run(
    run_id: int, request: Request, store: Store = Depends(get_store), admin: dict = Depends(require_role("admin"))
) -> dict:
    """Start a cancelled or failed run again from its last checkpoint."""
    row = runs.get_run(store, run_id)
    if row["status"] in ("running", "queued"):
        raise ApiError(409, f"run {run_id} is {row['status']}; cancel it first", field="run_id")
    if row["status"] == "finished":
        raise ApiError(409, f"run {run_id} already finished", field="run_id")
    _manager(request).launch(run_id, resume=True)
    return _view(store, run_id)
