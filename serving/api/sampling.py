"""Sampling jobs (admin): start serving.sampling.sampler.run_sampling in a background thread, watch it, cancel it.

A job for a dataset or a model that nothing serves is refused with a 404 before it starts (a named local engine
must be running, 409, and serve the model); a failure after the start (the engine dies, an external endpoint
does not answer) is recorded on the job row, and a job where every prompt it sampled failed ends 'failed'.

Job rows live in sampling_jobs (db/sampling.py); live progress comes from the running thread and is written
to the row as it goes, so GET shows it and a restart keeps the record (a job cut off by a restart is
marked failed on start-up). Each job is a thread of the server's job runner (serving.jobs); a stopping server
cancels them and waits for them.

    GET  /api/engines/{name}/models   what one engine serves now (the sampling form offers only those)
    POST /api/models/{name}/serve     {"engine"?}: serve a registered adapter (hot-load, or start an engine)
    POST   /api/engines/{name}/adapters            {"name", "path"?}: load an adapter into a running engine
    DELETE /api/engines/{name}/adapters/{adapter}  unload it
"""

from __future__ import annotations

import logging
import threading
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from db import sampling
from db.store import Store
from serving.api.deps import ApiError, get_store, require_role
from serving.engines.errors import ModelNotFoundError
from serving.engines.registry import list_engines, resolve_model
from serving.jobs import JobKind, ShuttingDownError

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["sampling jobs"])


class SamplingJobIn(BaseModel):
    dataset: str = Field(min_length=1, max_length=256)
    model: str = Field(min_length=1, max_length=256, description="served model or adapter name")
    engine: str | None = Field(default=None, max_length=256)
    n: int = Field(default=4, ge=1, le=64)
    temperature: float = Field(default=0.8, ge=0.0, le=5.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(default=256, ge=1, le=32768)
    seed: int | None = None
    limit: int | None = Field(default=None, ge=1)
    select: Literal["order", "uncertainty"] = Field(
        default="order", description="which prompts limit takes: first by id, or highest stored priority first"
    )
    concurrency: int = Field(default=8, ge=1, le=256)
    min_tokens: int | None = Field(default=None, ge=0)
    ignore_eos: bool = False


class SamplingManager(JobKind):
    """The server's sampling jobs (kind "sampling" of the job runner): one thread each, progress on the job's row."""

    kind = "sampling"

    def recover(self) -> None:
        """Jobs that were running when the server last stopped cannot still be running: they become failed."""
        sampling.fail_interrupted_jobs(self.store)

    def start(self, body: SamplingJobIn, created_by: str) -> int:
        params = body.model_dump(exclude={"dataset", "model", "engine"})
        job_id = sampling.create_job(
            self.store,
            dataset=body.dataset,
            model=body.model,
            engine=body.engine,
            params=params,
            created_by=created_by,
        )
        try:
            self.runner.start_thread(
                self.kind, job_id, lambda job: self._run(job_id, body, params, job.cancel, created_by)
            )
        except ShuttingDownError as e:
            sampling.update_job(self.store, job_id, status="failed", error=str(e), finished_at="now")
            raise ApiError(503, str(e)) from e
        return job_id

    def _run(self, job_id: int, body: SamplingJobIn, params: dict, cancel: threading.Event, created_by: str):
        from serving.sampling.sampler import run_sampling

        sampling.update_job(self.store, job_id, status="running", started_at="now")

        def progress(p: dict) -> None:
            sampling.update_job(
                self.store,
                job_id,
                prompts_total=p.get("prompts_total", 0),
                prompts_done=p.get("prompts_finished", 0),
                answers_stored=p.get("answers_stored", 0),
                failures=p.get("failures", 0),
            )

        try:
            report = run_sampling(
                self.store,
                body.dataset,
                body.model,
                engine=body.engine,
                progress=progress,
                cancel=cancel,
                created_by=created_by,
                **params,
            )
            data = report.as_dict()
            status, error = "cancelled" if cancel.is_set() else "finished", None
            if status == "finished" and data["failures"] and not data["prompts_done"]:
                # nothing came back at all (an endpoint that does not answer): that is a failed job
                status = "failed"
                done_before = f" ({data['prompts_skipped']} already had answers)" if data["prompts_skipped"] else ""
                error = (
                    f"every prompt sampled failed ({len(data['failures'])}){done_before}; "
                    f"the first: {data['failures'][0]['error']}"
                )
            sampling.update_job(
                self.store,
                job_id,
                status=status,
                error=error,
                report=data,
                prompts_total=data["prompts_total"],
                prompts_done=data["prompts_done"] + data["prompts_skipped"],
                answers_stored=data["answers_stored"],
                failures=len(data["failures"]),
                finished_at="now",
            )
        except Exception as e:  # the job records any failure; the server keeps running
            log.exception("sampling job %s failed", job_id)
            try:
                sampling.update_job(
                    self.store, job_id, status="failed", error=f"{type(e).__name__}: {e}", finished_at="now"
                )
            except Exception:
                log.exception("sampling job %s: could not record its failure", job_id)


@router.post("/sampling-jobs", status_code=201)
def start_job(
    body: SamplingJobIn,
    request: Request,
    store: Store = Depends(get_store),
    admin: dict = Depends(require_role("admin")),
) -> dict:
    """Start sampling n answers per prompt of a dataset from a served model; returns the job row."""
    store.dataset_id(body.dataset)  # 404 before a thread starts
    try:  # and a model nobody serves is a 404 now, not a job that fails a moment later
        target = resolve_model(body.model, body.engine)
    except ModelNotFoundError as e:
        raise ApiError(404, str(e), field="engine" if body.engine is not None else "model") from e
    if body.engine is not None and target["backend"] != "external":
        # a named local engine must be up and serve the model (an external endpoint may answer to any name,
        # so it is asked when the job runs)
        record = next((r for r in list_engines() if r["name"] == body.engine), None)
        if record is None or not record["alive"]:
            raise ApiError(409, f"engine '{body.engine}' is not running (preflab engine start ...)", field="engine")
        if body.model not in record["models"]:
            served = ", ".join(record["models"]) or "nothing"
            raise ApiError(
                404, f"engine '{body.engine}' does not serve '{body.model}' (it serves: {served})", field="model"
            )
    job_id = request.app.state.jobs.start(body, admin["name"])
    return sampling.get_job(store, job_id)


@router.get("/sampling-jobs")
def list_jobs(
    dataset: str | None = Query(None, max_length=256),
    store: Store = Depends(get_store),
    admin: dict = Depends(require_role("admin")),
) -> list[dict]:
    """Sampling jobs, newest first, with live progress (prompts_done of prompts_total)."""
    return sampling.list_jobs(store, dataset=dataset)


@router.get("/sampling-jobs/{job_id}")
def get_job(job_id: int, store: Store = Depends(get_store), admin: dict = Depends(require_role("admin"))) -> dict:
    return sampling.get_job(store, job_id)


@router.post("/sampling-jobs/{job_id}/cancel")
def cancel_job(
    job_id: int, request: Request, store: Store = Depends(get_store), admin: dict = Depends(require_role("admin"))
) -> dict:
    """Stop a running job: no new requests are sent; answers already stored stay."""
    job = sampling.get_job(store, job_id)
    if not request.app.state.jobs.cancel(job_id):
        raise ApiError(409, f"sampling job {job_id} is not running (status {job['status']})", field="job_id")
    return sampling.get_job(store, job_id)


# ---- engines: what they serve, and serving an adapter from the UI ------------------------------------------


@router.get("/engines/{name}/models")
def engine_models(name: str, admin: dict = Depends(require_role("admin"))) -> dict:
    """The models one engine serves: asked live from its /v1/models, else as recorded (`live` false)."""
    from serving.engines.registry import engine_models as models_of

    try:
        return models_of(name)
    except ModelNotFoundError as e:
        raise ApiError(404, str(e), field="engine") from e


class ServeIn(BaseModel):
    engine: str | None = Field(default=None, max_length=256, description="default: one on its base")
    timeout: float = Field(default=300.0, gt=0, le=1800, description="seconds to wait for a new engine")


@router.post("/models/{name}/serve")
def serve_adapter(
    name: str,
    body: ServeIn | None = None,
    store: Store = Depends(get_store),
    admin: dict = Depends(require_role("admin")),
) -> dict:
    """Make a registered adapter servable for sampling and the arena: loaded into a running engine on its base
    (hot-load), else a transformers engine started for it. Returns {model, engine, action, models}."""
    from serving.engines.adapters import serve_registered_adapter

    body = body or ServeIn()
    return serve_registered_adapter(store, name, engine=body.engine, timeout=body.timeout)


class AdapterIn(BaseModel):
    name: str = Field(min_length=1, max_length=256, pattern=r"^[^\s/]+$", description="the model name it serves as")
    path: str | None = Field(
        default=None, max_length=4096, description="adapter folder inside an adapter root; default: registered NAME's"
    )
    pool: bool = Field(default=False, description="into every member of the engine's pool, or none")


@router.post("/engines/{name}/adapters")
def load_engine_adapter(
    name: str,
    body: AdapterIn,
    store: Store = Depends(get_store),
    admin: dict = Depends(require_role("admin")),
) -> dict:
    """Load a LoRA adapter into running engine NAME without a restart; /v1/models and the arena list it at once.
    `path` must resolve inside an adapter root (serving.engines.adapters.check_adapter_path): else 400.
    Returns {engine, models} (with `pool`: also {engines: {member: models}})."""
    from serving.engines.adapters import adapter_source, check_adapter_path
    from serving.engines.launcher import load_adapter, load_adapter_pool

    _known_engine(name)
    folder = check_adapter_path(body.path) if body.path else adapter_source(store, body.name)[0]
    records = load_adapter_pool(name, body.name, folder) if body.pool else [load_adapter(name, body.name, folder)]
    return _served(name, records, body.pool)


@router.delete("/engines/{name}/adapters/{adapter}")
def unload_engine_adapter(
    name: str, adapter: str, pool: bool = Query(False), admin: dict = Depends(require_role("admin"))
) -> dict:
    """Remove adapter ADAPTER from running engine NAME (`?pool=true`: from every member of its pool that
    serves it). Returns {engine, models} (with `pool`: also {engines: {member: models}})."""
    from serving.engines.launcher import unload_adapter, unload_adapter_pool

    _known_engine(name)
    records = unload_adapter_pool(name, adapter) if pool else [unload_adapter(name, adapter)]
    return _served(name, records, pool)


def _served(engine: str, records: list[dict], pool: bool) -> dict:
    models = {r["name"]: [r["model"], *r["loras"]] for r in records}
    return {"engine": engine, "models": models[engine], **({"engines": models} if pool else {})}


def _known_engine(name: str) -> None:
    from serving.engines.registry import get_engine

    try:
        get_engine(name)
    except ModelNotFoundError as e:
        raise ApiError(404, str(e), field="engine") from e
