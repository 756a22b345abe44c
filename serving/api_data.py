"""Datasets, import, export, activity charts, engines and models: the admin's data API."""

from __future__ import annotations

import importlib
import inspect
import logging
import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from db import queue, review
from db.errors import ConflictError, NotFoundError
from db.store import Store
from serving.deps import ApiError, get_store, require_role

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["data"])

ANYONE = ("annotator", "reviewer", "admin")
MAX_GUIDELINES = 200_000


class DatasetIn(BaseModel):
    name: str = Field(min_length=1, max_length=256)
    description: str | None = Field(default=None, max_length=10_000)
    annotators_per_prompt: int = Field(default=1, ge=1, le=100)
    guidelines: str | None = Field(default=None, max_length=MAX_GUIDELINES)


class DatasetPatch(BaseModel):
    description: str | None = Field(default=None, max_length=10_000)
    annotators_per_prompt: int | None = Field(default=None, ge=1, le=100)
    guidelines: str | None = Field(default=None, max_length=MAX_GUIDELINES)


# ---- datasets ---------------------------------------------------------------------------------------


@router.get("/datasets")
def list_datasets(store: Store = Depends(get_store), user: dict = Depends(require_role(*ANYONE))) -> list[dict]:
    """Every dataset with its k (annotators_per_prompt), guideline version and sizes."""
    return store.list_datasets()


@router.get("/datasets/{name}")
def get_dataset(name: str, store: Store = Depends(get_store), user: dict = Depends(require_role(*ANYONE))) -> dict:
    """One dataset including its guidelines (markdown)."""
    return queue.get_dataset(store, name)


@router.post("/datasets", status_code=201)
def create_dataset(body: DatasetIn, store: Store = Depends(get_store),
                   admin: dict = Depends(require_role("admin"))) -> dict:
    """Create an empty dataset (imports create theirs on the fly too)."""
    if store.query("SELECT 1 FROM datasets WHERE name = ?", [body.name]):
        raise ConflictError(f"dataset '{body.name}' already exists; change it with PATCH /api/datasets/{body.name}")
    store.ensure_dataset(body.name, created_by=admin["name"], description=body.description)
    return queue.update_dataset(store, body.name, k=body.annotators_per_prompt, guidelines=body.guidelines,
                                new=True)


@router.patch("/datasets/{name}")
def update_dataset(name: str, body: DatasetPatch, store: Store = Depends(get_store),
                   admin: dict = Depends(require_role("admin"))) -> dict:
    """Change k, guidelines (bumps guideline_version when the text changes) or the description."""
    return queue.update_dataset(store, name, k=body.annotators_per_prompt, guidelines=body.guidelines,
                                description=body.description)


# ---- import / export -------------------------------------------------------------------------------------


def _importer():
    """The importer's entry point (db/importers, issue 2): import_file(store, path, *, format, dataset, ...)."""
    for module_name in ("db.importers", "db.import_api", "db.importer"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        fn = getattr(module, "import_file", None)
        if fn is not None:
            return fn
    raise ApiError(501, "this server has no importer yet (db.importers.import_file is missing)")


def _call(fn, *args, **kwargs):
    """Call fn with only the keyword arguments it accepts (the data functions grow options over time)."""
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return fn(*args, **kwargs)


def _jsonable(value):
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(value)
    return value


@router.post("/import")
def import_upload(
    request: Request,
    file: UploadFile = File(...),
    dataset: str = Form(..., min_length=1, max_length=256),
    format: str = Form("auto", max_length=64),
    dry_run: bool = Form(False),
    skip_invalid: bool = Form(False),
    store: Store = Depends(get_store),
    admin: dict = Depends(require_role("admin")),
) -> dict:
    """Upload a file and import it into `dataset` (format auto-detected unless given).

    Answers {"ok": true, "report": ...}; a bad file answers 400 with the file, line and field of the first
    problem (the database is left as it was).
    """
    limit = request.app.state.config.max_upload_mb * 2**20
    name = Path(file.filename or "upload").name or "upload"
    with tempfile.TemporaryDirectory(prefix="preflab-upload-") as tmp:
        path = Path(tmp) / name
        size = 0
        with open(path, "wb") as out:
            while chunk := file.file.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, f"upload larger than {limit // 2**20} MiB", field="file")
                out.write(chunk)
        fn = _importer()
        report = _call(fn, store, path, format=None if format == "auto" else format, dataset=dataset,
                       dry_run=dry_run, skip_invalid=skip_invalid, created_by=admin["name"])
    report = _jsonable(report)
    if isinstance(report, dict):  # name the upload, not our temp path
        report = {k: (name if isinstance(v, str) and v == str(path) else v) for k, v in report.items()}
    return {"ok": True, "file": name, "report": report}


def _exporter():
    try:
        module = importlib.import_module("db.export")
    except ModuleNotFoundError:
        raise ApiError(501, "this server has no exporter yet (db.export.export is missing)") from None
    return module


@router.get("/export")
def export_download(
    request: Request,
    dataset: str | None = Query(None, max_length=256),
    format: str = Query("jsonl", max_length=64),
    store: Store = Depends(get_store),
    admin: dict = Depends(require_role("admin")),
):
    """Export `dataset` in `format` as a download; any other query parameter is passed on as an export filter.

    The response carries X-PrefLab-Snapshot: the content hash of what was exported (training records it).
    """
    module = _exporter()
    filters = {k: v for k, v in request.query_params.items() if k not in ("dataset", "format")}
    for key, value in list(filters.items()):
        if value.lower() in ("true", "false"):
            filters[key] = value.lower() == "true"
    tmp = Path(tempfile.mkdtemp(prefix="preflab-export-"))
    try:
        result = _call(module.export, store, dataset=dataset, format=format, out=tmp / "export", **filters)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    path, snapshot = _export_result(result, tmp)
    headers = {"X-PrefLab-Snapshot": snapshot or ""}
    return FileResponse(path, filename=path.name, headers=headers, background=BackgroundTask(shutil.rmtree, tmp, True))


def _export_result(result, tmp: Path) -> tuple[Path, str | None]:
    """(file to send, snapshot id) from whatever db.export.export returned."""
    data = _jsonable(result)
    path = snapshot = None
    if isinstance(data, dict):
        path = data.get("path") or data.get("out")
        snapshot = data.get("snapshot_id") or data.get("snapshot") or data.get("content_hash")
    elif isinstance(data, (str, Path)):
        path = data
    if path is None or not Path(path).is_file():
        files = [p for p in tmp.rglob("*") if p.is_file()]
        if len(files) != 1:
            if not files:
                raise NotFoundError("the export wrote no file")
            archive = shutil.make_archive(str(tmp / "export"), "zip", root_dir=tmp / "export")
            path = archive
        else:
            path = files[0]
    return Path(path), snapshot


# ---- activity, engines, models ---------------------------------------------------------------------------


@router.get("/stats/activity")
def activity(dataset: str | None = Query(None, max_length=256), days: int = Query(90, ge=1, le=3650),
             store: Store = Depends(get_store), user: dict = Depends(require_role("reviewer", "admin"))) -> dict:
    """Chart data: rankings per day, per annotator, and the distribution of per-prompt agreement (Kendall's W)."""
    return review.activity(store, dataset, days=days)


@router.get("/engines")
def engines(user: dict = Depends(require_role("admin"))) -> list[dict]:
    """Inference engines in the registry (serving.engines.registry)."""
    from serving.engines.registry import list_engines

    return list_engines()


@router.get("/models")
def models(store: Store = Depends(get_store), user: dict = Depends(require_role(*ANYONE))) -> list[dict]:
    """Registered models and adapters."""
    return store.query(
        "SELECT id, name, kind, base, path, stage, parent, run_id, snapshot_id, metrics, created_by, "
        "CAST(created_at AS VARCHAR) AS created_at FROM models ORDER BY id"
    )

