"""Datasets, import, export, activity charts, engines and models: the admin's data API."""

from __future__ import annotations

import inspect
import json
import logging
import shutil
import tempfile
import typing
import zipfile
from pathlib import Path

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from db import importers, models_registry, queue, review
from db.errors import ConflictError, InputError
from db.export.config import FORMATS as EXPORT_FORMATS
from db.export.config import ExportConfig, filter_fields
from db.store import Store
from serving.api.deps import ApiError, get_store, read_store, require_role

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


# ---- formats ----------------------------------------------------------------------------------------


@router.get("/formats")
def formats(user: dict = Depends(require_role("admin"))) -> dict:
    """The import formats (`auto` detects one from the file) and the export formats with their file suffix and
    what each holds: the Data page's choices, from the same lists the CLI's --format options use."""
    return {
        "import": ["auto", *importers.FORMATS],
        "export": [{"name": k, "suffix": suffix, "description": d} for k, (suffix, d) in EXPORT_FORMATS.items()],
    }


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
def create_dataset(
    body: DatasetIn, store: Store = Depends(get_store), admin: dict = Depends(require_role("admin"))
) -> dict:
    """Create an empty dataset (imports create theirs on the fly too)."""
    if store.has_dataset(body.name):
        raise ConflictError(f"dataset '{body.name}' already exists; change it with PATCH /api/datasets/{body.name}")
    store.ensure_dataset(body.name, created_by=admin["name"], description=body.description)
    return queue.update_dataset(store, body.name, k=body.annotators_per_prompt, guidelines=body.guidelines, new=True)


@router.patch("/datasets/{name}")
def update_dataset(
    name: str,
    body: DatasetPatch,
    request: Request,
    store: Store = Depends(get_store),
    admin: dict = Depends(require_role("admin")),
) -> dict:
    """Change k, guidelines (bumps guideline_version when the text changes) or the description."""
    dataset = queue.update_dataset(
        store, name, k=body.annotators_per_prompt, guidelines=body.guidelines, description=body.description
    )
    # items leased ahead were leased under the old k and show the old guidelines: nobody has seen them yet
    request.app.state.front.reclaim(dataset["id"])
    return dataset


# ---- import / export -------------------------------------------------------------------------------------


def import_report(report, name: str) -> dict:
    """db.importers.ImportReport as JSON, naming the uploaded file instead of the server's temp path."""
    return {
        "file": name,
        "format": report.format,
        "detected": report.detected,
        "engine": report.engine,
        "dry_run": report.dry_run,
        "records": report.records,
        "added": report.added.as_dict(),
        "in_file": report.in_file,
        "already_stored": report.already_stored(),
        "skipped": [{"message": e.reason, "file": name, "line": e.line, "field": e.field} for e in report.skipped],
        "records_outcome": report.accounting(),
        "empty": {"lines": report.empty, "reason": report.empty_reason},
    }


@router.post("/import")
def import_upload(
    request: Request,
    file: UploadFile = File(...),
    dataset: str | None = Form(None, max_length=256),
    format: str = Form("auto", max_length=64),
    dry_run: bool = Form(False),
    skip_invalid: bool = Form(False),
    store: Store = Depends(get_store),
    admin: dict = Depends(require_role("admin")),
) -> dict:
    """Upload a file (JSON Lines, JSON array, CSV; .gz too) and import it into `dataset` (default: the file name).

    The format is detected unless given. Answers {"ok": true, "report": {...}}; a bad file answers 400 with
    the file, line and field of the first problem, and the database is left as it was.
    """
    from db.importers import import_file

    limit = request.app.state.config.max_upload_mb * 2**20
    name = Path(file.filename or "upload.jsonl").name or "upload.jsonl"
    with tempfile.TemporaryDirectory(prefix="preflab-upload-") as tmp:
        path = Path(tmp) / name
        size = 0
        with open(path, "wb") as out:
            while chunk := file.file.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, f"upload larger than {limit // 2**20} MiB", field="file")
                out.write(chunk)
        try:
            report = import_file(
                store, path, fmt=format, dataset=dataset or None, dry_run=dry_run, skip_invalid=skip_invalid
            )
        except InputError as e:  # name the upload, not the temp file
            raise InputError(e.reason, file=name if e.file else None, line=e.line, field=e.field) from None
    return {"ok": True, "report": import_report(report, name)}


def _export_query():
    """A dependency reading `format` and every ExportConfig filter (db.export.config.filter_fields) from the query
    string into an ExportConfig, so a new filter is a query parameter without touching this module."""
    hints = typing.get_type_hints(ExportConfig)
    params = [
        inspect.Parameter(
            "format",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=str,
            default=Query(..., max_length=64, description=" | ".join(EXPORT_FORMATS)),
        )
    ]
    for f in filter_fields():
        meta, kind = f.metadata, hints[f.name]
        if kind in (int, float):
            low, high = meta.get("range", (meta.get("min"), None))
            query = Query(f.default, ge=low, le=high, description=meta.get("help"))
        else:  # text (a split may be given as a number: ExportConfig reads both), bounded like every input
            kind, query = str | None, Query(f.default, max_length=256, description=meta.get("help"))
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=query))

    def build(**values) -> ExportConfig:
        return ExportConfig(**values)

    build.__signature__ = inspect.Signature(params)
    return build


@router.get("/export")
def export_download(
    admin: dict = Depends(require_role("admin")),  # first: who may ask is checked before what is asked
    store: Store = Depends(read_store),
    cfg: ExportConfig = Depends(_export_query()),
    out_name: str | None = Query(None, max_length=200, description="file name to write (the CLI sends its --out)"),
):
    """Export as a download (one file, or a zip when there are several: a split, llamafactory's dataset_info).

    X-PrefLab-Snapshot carries the snapshot id (content hash of the data) that training runs record.
    """
    from db.export import export

    if cfg.dataset is not None:
        store.dataset_id(cfg.dataset)  # 404 with the known names
    name = Path(out_name).name if out_name else f"{cfg.dataset or 'all'}-{cfg.format}"
    if cfg.format == "classification" and not name.endswith((".csv", ".jsonl", ".parquet", ".gz")):
        name += ".jsonl"
    tmp = Path(tempfile.mkdtemp(prefix="preflab-export-"))
    try:
        result = export(store, cfg, tmp / name)
        headers = {
            "X-PrefLab-Snapshot": result.snapshot_id,
            "X-PrefLab-Counts": json.dumps(result.counts, ensure_ascii=True),
        }
        if result.path is not None and len(result.paths) == 1:
            path, media = result.path, "application/octet-stream"
        else:  # several files: one zip with them and the snapshot record
            path = tmp / f"{Path(name).stem}.zip"
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
                for p in [*result.paths.values(), result.snapshot_path]:
                    z.write(p, arcname=p.name)
            media = "application/zip"
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FileResponse(
        path,
        filename=path.name,
        media_type=media,
        headers=headers,
        background=BackgroundTask(shutil.rmtree, tmp, True),
    )


# ---- activity, engines, models ---------------------------------------------------------------------------


@router.get("/stats/activity")
def activity(
    dataset: str | None = Query(None, max_length=256),
    days: int = Query(90, ge=1, le=3650),
    store: Store = Depends(read_store),
    user: dict = Depends(require_role("reviewer", "admin")),
) -> dict:
    """Chart data: rankings per day, per annotator, and the distribution of per-prompt agreement (Kendall's W)."""
    return review.activity(store, dataset, days=days)


@router.get("/engines")
def engines(user: dict = Depends(require_role("admin"))) -> list[dict]:
    """Inference engines in the registry (serving.engines.registry)."""
    from serving.engines.registry import list_engines

    return list_engines()


@router.get("/models")
def models(store: Store = Depends(get_store), user: dict = Depends(require_role(*ANYONE))) -> list[dict]:
    """Registered models and adapters. Only an admin sees where they are on the server (path, base, run)."""
    rows = models_registry.list_models(store, metrics_as_text=True)
    if user["role"] != "admin":
        rows = [{k: v for k, v in r.items() if k not in ("base", "path", "run_id", "metrics")} for r in rows]
    return rows
