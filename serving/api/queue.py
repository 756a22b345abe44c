"""The annotation queue: GET /api/queue/next, POST /api/rankings (which answers with the next item at once)."""

from __future__ import annotations

import json
import logging
from typing import Literal

import duckdb
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt

from db import history, media, queue
from db.errors import NotFoundError
from db.store import Store
from serving.api.deps import ApiError, get_store, require_role, thread_reader

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["annotation"])

ANYONE = ("annotator", "reviewer", "admin")


class RankingChange(BaseModel):
    """A submit's body without the assignment: the ranking replaces what was stored."""

    status: Literal["submitted", "skipped", "flagged"] = "submitted"
    ranks: dict[str, StrictInt] = Field(default_factory=dict, description="generation id -> rank (1 best; ties equal)")
    all_bad: StrictBool = False
    skip_reason: str | None = Field(default=None, max_length=queue.MAX_TEXT)
    flag_reason: str | None = Field(default=None, max_length=queue.MAX_TEXT)
    comment: str | None = Field(default=None, max_length=queue.MAX_TEXT)


class RankingIn(RankingChange):
    assignment_id: StrictInt
    time_on_task_ms: StrictInt | None = Field(default=None, ge=0)
    ratings: dict[str, dict[str, StrictInt | StrictFloat]] | None = Field(
        default=None, max_length=64, description="generation id -> {aspect: value} on the dataset's aspects"
    )
    rationale: str | None = Field(default=None, max_length=queue.MAX_TEXT, description="why this ranking")
    thumbs: dict[str, StrictBool] | None = Field(
        default=None, max_length=64, description="task 'rate': generation id -> true (up) or false (down)"
    )


def dataset_id_or_404(store: Store, name: str) -> int:
    try:
        return store.dataset_id(name)
    except NotFoundError as e:
        raise ApiError(404, str(e), field="dataset") from None


def item_view(lease: dict) -> dict:
    """What an annotator sees: the prompt and its answers in their stored order, without model names."""
    texts, assets = lease["texts"], lease["assets"]
    return {
        "assignment_id": lease["assignment_id"],
        "dataset": lease["dataset"],
        "prompt": {
            "id": lease["prompt_id"],
            "messages": json.loads(lease["messages"]),
            # where to fetch each image, never the server's file path
            "assets": [
                {"url": f"/api/prompts/{lease['prompt_id']}/assets/{i}", "name": f"image {i + 1}"}
                for i in range(len(json.loads(assets) if assets else []))
            ],
        },
        "answers": [{"id": gid, "text": texts[gid]} for gid in lease["answer_order"] if gid in texts],
        "guidelines": lease["guidelines"],
        "guideline_version": lease["guideline_version"],
        # what the page asks for (the same for every item of the dataset, gold or not): see docs/api.md
        "task": lease.get("task", "rank"),
        "aspects": lease.get("aspects") or [],
        "rationale": lease.get("rationale", "off"),
        "expires_at": lease["expires_at"].isoformat(timespec="seconds"),
    }


def next_view(lease: dict | None, progress: dict) -> dict:
    return {"item": item_view(lease) if lease else None, "progress": progress}


# The two routes an annotator calls all day take the Store from the app (get_store(request)) instead of
# Depends(get_store), and have no response model (FastAPI validates a sync route's return value in a worker
# thread of its own): two worker-thread hand-offs fewer per request (see serving.api.deps.current_user).


@router.get("/queue/next", response_model=None)
def queue_next(
    request: Request, dataset: str = Query(..., max_length=256), user: dict = Depends(require_role(*ANYONE))
) -> dict:
    """The next prompt to rank in `dataset` (your live lease if you hold one): {item, progress}; item null if none."""
    try:
        lease, progress = _next_item(request, user, dataset=dataset)
    except NotFoundError as e:
        raise ApiError(404, str(e), field="dataset") from None
    if lease is None:
        lease, progress = or_reclaimed(request, user, get_store(request).dataset_id(dataset), progress)
    request.app.state.front.handed_out(lease, user)
    return next_view(lease, progress)


def _next_item(request: Request, user: dict, **where) -> tuple[dict | None, dict]:
    """queue.next_item for the signed-in user in `dataset` or `dataset_id`, texts read off the Store lock."""
    store = get_store(request)
    return queue.next_item(
        store,
        user["id"],
        lease_s=request.app.state.config.lease_s,
        created_by=user["name"],
        reader=thread_reader(store),
        **where,
    )


def or_reclaimed(request: Request, user: dict, dataset_id: int, progress: dict) -> tuple[dict | None, dict]:
    """Nothing left for this user: at the end of a queue the last free prompts may be the items leased ahead for
    others (serving.api.queue_front), which nobody has seen yet. Take those back and ask once more."""
    if not request.app.state.front.reclaim(dataset_id):
        return None, progress
    return _next_item(request, user, dataset_id=dataset_id)  # the Store's gate waits for the releases


@router.post("/rankings", status_code=201, response_model=None)
def submit_ranking(
    body: RankingIn, request: Request, response: Response, user: dict = Depends(require_role(*ANYONE))
) -> dict:
    """Store a ranking (or a skip / flag) for one of your assignments; returns {ranking_id, next}.

    Usually answered from the server's memory once the submit is in its journal on disk, with the next item
    leased ahead (serving.api.queue_front); the database write follows right behind. Otherwise the ranking and the
    next lease are written in one transaction. Should that fail on the database's side, the ranking is stored
    on its own and the next item fetched after it, so a submit is never lost to it. The header X-PrefLab-Submit
    says which way it went: `journal` or `database` (bench/annotate.py counts them).
    """
    store, front = get_store(request), request.app.state.front
    fields = body.model_dump(exclude={"assignment_id"})
    fast = front.submit(user, body.assignment_id, fields)
    if fast is not None:
        ranking_id, lease, progress = fast
        response.headers["X-PrefLab-Submit"] = "journal"
        return {"ranking_id": ranking_id, "next": next_view(lease, progress)}
    response.headers["X-PrefLab-Submit"] = "database"
    held = front.forget(body.assignment_id, user["id"])
    lease_s, uid = request.app.state.config.lease_s, user["id"]
    try:
        try:
            ranking_id, lease, progress = queue.submit_and_next(
                store,
                uid,
                body.assignment_id,
                lease_s=lease_s,
                created_by=user["name"],
                reader=thread_reader(store),
                **fields,
            )
        except duckdb.Error as e:
            if isinstance(e, duckdb.ConstraintException):
                raise
            log.warning("submit + next in one transaction failed (%s); storing the ranking on its own", e)
            ranking_id = queue.submit(store, uid, body.assignment_id, created_by=user["name"], **fields)
            dataset_id = queue.dataset_of_ranking(store, ranking_id)
            lease, progress = queue.next_item(
                store, uid, dataset_id=dataset_id, lease_s=lease_s, created_by=user["name"]
            )
    except NotFoundError as e:
        raise ApiError(404, str(e), field="assignment_id") from None
    if lease is None:
        dataset_id = held.dataset_id if held else queue.dataset_of_ranking(store, ranking_id)
        lease, progress = or_reclaimed(request, user, dataset_id, progress)
    front.handed_out(lease, user)
    return {"ranking_id": ranking_id, "next": next_view(lease, progress)}


@router.get("/prompts/{prompt_id}/assets/{index}")
def prompt_asset(
    prompt_id: int, index: int, store: Store = Depends(get_store), user: dict = Depends(require_role(*ANYONE))
):
    """A prompt's image (a visual question), by its position in prompt.assets. Served only from the database's
    media folder (db.media), only as an image, and to an annotator only for a prompt the queue gave them."""
    assets = media.prompt_assets(store, prompt_id, seen_by=user["id"] if user["role"] == "annotator" else None)
    if assets is None:
        raise ApiError(404, f"no prompt with id {prompt_id} for you", field="prompt_id")
    if not 0 <= index < len(assets):
        raise ApiError(404, f"prompt {prompt_id} has {len(assets)} asset(s); no index {index}", field="index")
    entry = assets[index]
    try:
        path, content_type = media.servable(
            entry if isinstance(entry, str) else str(entry.get("path", "")), media.media_dir(store)
        )
    except media.ImageError as e:
        raise ApiError(404, str(e), field="index") from None
    # nosniff + a sandboxing CSP: the browser treats the bytes as an image and nothing else
    headers = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox"}
    return FileResponse(path, media_type=content_type, headers=headers, content_disposition_type="inline")


@router.post("/assignments/{assignment_id}/release")
def release(
    assignment_id: int,
    request: Request,
    store: Store = Depends(get_store),
    user: dict = Depends(require_role(*ANYONE)),
):
    """Give your lease back so someone else can take the prompt (and the one leased ahead for you after it).
    {"ok": true, "released": false} if it was no longer leased; 404 for an assignment that is not yours."""
    front = request.app.state.front
    held = front.forget(assignment_id, user["id"])  # (remembers only this user's assignments)
    try:
        released = queue.release(store, user["id"], assignment_id)
    except NotFoundError as e:
        raise ApiError(404, str(e), field="assignment_id") from None
    if held is not None:
        front.release_ahead(user["id"], held.dataset_id)
    return {"ok": True, "released": released}


@router.get("/rankings/mine")
def my_rankings(
    dataset: str | None = Query(None, max_length=256),
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    store: Store = Depends(get_store),
    user: dict = Depends(require_role(*ANYONE)),
) -> list[dict]:
    """Your rankings from the Rank page, newest first, a page at a time (`limit`, `offset`): each with a snippet
    of its prompt, its status, when you submitted it and whether you can still change it (`editable`)."""
    dataset_id = dataset_id_or_404(store, dataset) if dataset is not None else None
    return history.mine(store, user["id"], dataset_id=dataset_id, limit=limit, offset=offset)


def _own_or_refuse(store: Store, user: dict, ranking_id: int) -> None:
    """404 if there is no such ranking, 403 if it is someone else's."""
    owner = history.owner_of(store, ranking_id)
    if owner is None:
        raise ApiError(404, f"no ranking with id {ranking_id}", field="ranking_id")
    if owner != user["id"]:
        raise ApiError(403, f"ranking {ranking_id} is someone else's", field="ranking_id")


@router.get("/rankings/{ranking_id}")
def my_ranking(
    ranking_id: int, store: Store = Depends(get_store), user: dict = Depends(require_role(*ANYONE))
) -> dict:
    """One of your rankings as you saw it: the prompt, the answers in your order (no model names), your ranks."""
    _own_or_refuse(store, user, ranking_id)
    return history.own(store, user["id"], ranking_id)


@router.put("/rankings/{ranking_id}")
def change_ranking(
    ranking_id: int,
    body: RankingChange,
    store: Store = Depends(get_store),
    user: dict = Depends(require_role(*ANYONE)),
) -> dict:
    """Change one of your rankings while its prompt is open; its pairs are derived again. 403 for someone
    else's, 409 once the prompt is closed (k rankings, or adjudicated). Answers like GET /api/rankings/{id}."""
    _own_or_refuse(store, user, ranking_id)
    return history.change(store, user["id"], ranking_id, **body.model_dump())
