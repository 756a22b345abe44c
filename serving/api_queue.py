"""The annotation queue: GET /api/queue/next, POST /api/rankings (which answers with the next item at once)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, StrictBool, StrictInt

from db import queue
from db.errors import NotFoundError
from db.store import Store
from serving.deps import ApiError, get_store, require_role

router = APIRouter(prefix="/api", tags=["annotation"])

ANYONE = ("annotator", "reviewer", "admin")


class RankingIn(BaseModel):
    assignment_id: StrictInt
    status: Literal["submitted", "skipped", "flagged"] = "submitted"
    ranks: dict[str, StrictInt] = Field(default_factory=dict, description="generation id -> rank (1 best; ties equal)")
    all_bad: StrictBool = False
    skip_reason: str | None = Field(default=None, max_length=queue.MAX_TEXT)
    flag_reason: str | None = Field(default=None, max_length=queue.MAX_TEXT)
    comment: str | None = Field(default=None, max_length=queue.MAX_TEXT)
    time_on_task_ms: StrictInt | None = Field(default=None, ge=0)


def dataset_id_or_404(store: Store, name: str) -> int:
    try:
        return store.dataset_id(name)
    except NotFoundError as e:
        raise ApiError(404, str(e), field="dataset") from None


def item_view(store: Store, dataset: str, lease: dict) -> dict:
    """What an annotator sees: the prompt and its answers in their stored order, without model names."""
    with store._lock:
        messages, assets, guidelines, version = store._first(
            "SELECT p.messages, p.assets, d.guidelines, d.guideline_version FROM prompts p "
            "JOIN datasets d ON d.id = p.dataset_id WHERE p.id = ?",
            [lease["prompt_id"]],
        )
        texts = lease.get("texts") or dict(
            store.con.execute("SELECT id, text FROM generations WHERE prompt_id = ?", [lease["prompt_id"]]).fetchall()
        )
    return {
        "assignment_id": lease["assignment_id"],
        "dataset": dataset,
        "prompt": {
            "id": lease["prompt_id"],
            "messages": json.loads(messages),
            "assets": json.loads(assets) if assets else [],
        },
        "answers": [{"id": gid, "text": texts[gid]} for gid in lease["answer_order"] if gid in texts],
        "guidelines": guidelines or "",
        "guideline_version": version,
        "expires_at": lease["expires_at"].isoformat(timespec="seconds"),
    }


def next_view(store: Store, request: Request, dataset: str, dataset_id: int, user: dict) -> dict:
    lease = queue.next_assignment(
        store, dataset_id, user["id"], lease_s=request.app.state.config.lease_s, created_by=user["name"]
    )
    return {
        "item": item_view(store, dataset, lease) if lease else None,
        "progress": queue.progress(store, dataset_id, user["id"]),
    }


@router.get("/queue/next")
def queue_next(
    request: Request,
    dataset: str = Query(..., max_length=256),
    store: Store = Depends(get_store),
    user: dict = Depends(require_role(*ANYONE)),
) -> dict:
    """The next prompt to rank in `dataset` (your live lease if you hold one): {item, progress}; item null if none."""
    return next_view(store, request, dataset, dataset_id_or_404(store, dataset), user)


@router.post("/rankings", status_code=201)
def submit_ranking(
    body: RankingIn, request: Request, store: Store = Depends(get_store), user: dict = Depends(require_role(*ANYONE))
) -> dict:
    """Store a ranking (or a skip / flag) for one of your assignments; returns {ranking_id, next}."""
    row = store.query(
        "SELECT d.name, d.id FROM prompts p, datasets d WHERE d.id = p.dataset_id AND p.id = "
        "(SELECT prompt_id FROM assignments WHERE id = ? AND user_id = ?)",
        [body.assignment_id, user["id"]],
    )
    if not row:
        raise ApiError(404, f"no assignment {body.assignment_id} of yours", field="assignment_id")
    ranking_id = queue.submit(
        store,
        user["id"],
        body.assignment_id,
        status=body.status,
        ranks=body.ranks,
        all_bad=body.all_bad,
        skip_reason=body.skip_reason,
        flag_reason=body.flag_reason,
        comment=body.comment,
        time_on_task_ms=body.time_on_task_ms,
        created_by=user["name"],
    )
    return {"ranking_id": ranking_id, "next": next_view(store, request, row[0]["name"], row[0]["id"], user)}


@router.get("/prompts/{prompt_id}/assets/{index}")
def prompt_asset(
    prompt_id: int, index: int, store: Store = Depends(get_store), user: dict = Depends(require_role(*ANYONE))
):
    """The file of a prompt's asset (the image of a visual question), by its position in prompt.assets."""
    rows = store.query("SELECT CAST(assets AS VARCHAR) AS assets FROM prompts WHERE id = ?", [prompt_id])
    if not rows:
        raise ApiError(404, f"no prompt with id {prompt_id}", field="prompt_id")
    assets = json.loads(rows[0]["assets"]) if rows[0]["assets"] else []
    if not 0 <= index < len(assets):
        raise ApiError(404, f"prompt {prompt_id} has {len(assets)} asset(s); no index {index}", field="index")
    entry = assets[index]
    path = Path(entry if isinstance(entry, str) else entry.get("path", ""))
    if not path.is_file():
        raise ApiError(404, f"the asset file {path.name} is missing on the server", field="index")
    return FileResponse(path, filename=path.name)


@router.post("/assignments/{assignment_id}/release")
def release(assignment_id: int, store: Store = Depends(get_store), user: dict = Depends(require_role(*ANYONE))):
    """Give your lease back so someone else can take the prompt."""
    queue.release(store, user["id"], assignment_id)
    return {"ok": True}


@router.get("/rankings/mine")
def my_rankings(
    dataset: str | None = None,
    limit: int = Query(50, ge=1, le=1000),
    store: Store = Depends(get_store),
    user: dict = Depends(require_role(*ANYONE)),
) -> list[dict]:
    """Your latest rankings (newest first)."""
    params: list = [user["id"]]
    where = ""
    if dataset is not None:
        where = " AND p.dataset_id = ?"
        params.append(dataset_id_or_404(store, dataset))
    return store.query(
        "SELECT r.id, r.prompt_id, r.status, r.all_bad, r.comment, r.guideline_version, r.time_on_task_ms, "
        "CAST(r.created_at AS VARCHAR) AS created_at FROM rankings r JOIN prompts p ON p.id = r.prompt_id "
        f"WHERE r.user_id = ?{where} ORDER BY r.id DESC LIMIT {int(limit)}",  # noqa: S608 (int)
        params,
    )
