"""Training runs (admin): launch `python -m alignment` subprocesses, watch them, cancel, resume, register adapters.

    POST /api/runs                    {stage, base, adapter?, dataset? + filters? | data?, config?, name?}
    GET  /api/runs                    newest first
    GET  /api/runs/{id}               the row + result.json + lineage (snapshot -> run -> adapter model)
    GET  /api/runs/{id}/metrics?since=N   metrics.jsonl records from line N
    GET  /api/runs/{id}/log?lines=N   the tail of train.log
    POST /api/runs/{id}/cancel        SIGTERM (the job checkpoints and stops), SIGKILL after a grace period
    POST /api/runs/{id}/resume        start again from the last checkpoint

Training never runs in the server process. Each run is a job of the server's runner (serving.jobs.start_run): a
watcher thread waits for its process; when it ends the row becomes finished (and the adapter is registered as a
model), cancelled, or failed with the log's tail. A stopping server cancels its runs (SIGTERM: they checkpoint).
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from alignment import STAGES
from db import models_registry, runs
from db.errors import ConflictError
from db.store import Store
from serving.api.deps import ApiError, get_store, require_role
from serving.engines.registry import pid_alive
from serving.jobs import JobKind, ShuttingDownError, start_run

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["training runs"])


class RunIn(BaseModel):
    stage: str = Field(pattern=f"^({'|'.join(STAGES)})$")
    base: str = Field(min_length=1, max_length=1000)
    adapter: str | None = Field(default=None, max_length=1000, description="parent adapter: model name or folder")
    dataset: str | None = Field(default=None, max_length=256)
    filters: dict = Field(default_factory=dict, description="export filters: min_annotators, min_agreement, ...")
    data: str | None = Field(default=None, max_length=1000, description="an existing snapshot file instead")
    config: dict = Field(default_factory=dict, description="hyperparameters: any key of the stage's config")
    name: str | None = Field(default=None, max_length=200, description="model name for the finished adapter")
    reward_model: str | None = Field(default=None, max_length=1000)
    threads: int | None = Field(default=None, ge=1, le=256)


class RunManager(JobKind):
    """The server's training runs (kind "run" of the job runner): create, launch, cancel, reconcile, recover."""

    kind = "run"

    def recover(self) -> None:
        """Runs recorded as active whose process is gone (a restart lost them) become failed; one still alive
        (started by `preflab train --background`, or left by a server that was killed) is reconciled when it ends."""
        for row in runs.active_runs(self.store):
            if pid_alive(row["pid"]):
                continue
            runs.mark_done(
                self.store,
                row["id"],
                "failed",
                error="the server restarted while the run was active; resume it to continue from its last checkpoint",
            )

    def create(self, body: RunIn, created_by: str) -> int:
        from alignment.errors import ConfigError
        from alignment.launch import export_snapshot, new_run_dir, register_run, resolve_model_path, resolve_model_ref

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
        run_id, _ = register_run(
            self.store,
            body.stage,
            run_dir,
            values=values,
            created_by=created_by,
            parent=body.adapter,
            model_name=body.name,
            threads=body.threads,
        )
        self.launch(run_id)
        return run_id

    def launch(self, run_id: int, *, resume: bool = False) -> None:
        try:
            start_run(self.runner, self.store, run_id, resume=resume)
        except ShuttingDownError as e:
            if not resume:  # the row was recorded for this start: it must not wait as queued for ever
                runs.mark_done(self.store, run_id, "failed", error=str(e))
            raise ApiError(503, str(e), field="run_id") from e
        except ConflictError as e:
            raise ApiError(409, f"run {run_id} is already running", field="run_id") from e

    def reconcile(self) -> None:
        """Runs this server did not start (`preflab train --background`) whose process has ended: record the end."""
        from alignment.launch import record_end

        for row in runs.active_runs(self.store):
            ours = self.runner.get(self.kind, row["id"]) is not None
            if not ours and row["status"] == "running" and not pid_alive(row["pid"]):
                record_end(self.store, row)

    def cancel(self, run_id: int) -> bool:
        """SIGTERM the run's job (it checkpoints and stops), SIGKILL after a grace period; 409 if it is not running."""
        if not super().cancel(run_id):
            raise ApiError(409, f"run {run_id} is not running", field="run_id")
        return True


def _manager(request: Request) -> RunManager:
    return request.app.state.runs


def _view(store: Store, run_id: int) -> dict:
    from alignment.runs import read_launch, read_result

    row = runs.get_run(store, run_id)
    exists = Path(row["run_dir"]).exists()
    row["result"] = read_result(row["run_dir"]) if exists else None
    row["launch"] = read_launch(row["run_dir"]) if exists else None  # launcher, processes, world size
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
