"""Review (reviewer, admin): stats and agreement, the prompts with most disagreement, rankings side by side,
adjudication."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, StrictInt

from db import review
from db.queue import MAX_TEXT
from db.store import Store
from serving.api.deps import get_store, read_store, require_role
from serving.api.queue import dataset_id_or_404

router = APIRouter(prefix="/api", tags=["review"])

REVIEW = ("reviewer", "admin")


class AdjudicationIn(BaseModel):
    prompt_id: StrictInt
    ranks: dict[str, StrictInt] = Field(description="generation id -> final rank (1 best; ties equal)")
    comment: str | None = Field(default=None, max_length=MAX_TEXT)


@router.get("/stats")
def stats(
    dataset: str | None = Query(None, max_length=256),
    source: Literal["all", "human", "arena"] = "all",
    store: Store = Depends(read_store),
    user: dict = Depends(require_role(*REVIEW)),
) -> dict:
    """Counts and agreement (tau-b between annotators and vs consensus, Kendall's W, Krippendorff's alpha)."""
    from db.agreement import dataset_stats

    if dataset is not None:
        dataset_id_or_404(store, dataset)
    return dataset_stats(store, dataset, source=source)


@router.get("/review/disagreements")
def disagreements(
    dataset: str | None = Query(None, max_length=256),
    limit: int = Query(20, ge=1, le=500),
    store: Store = Depends(read_store),
    user: dict = Depends(require_role(*REVIEW)),
) -> list[dict]:
    """Prompts ranked by two or more annotators, least agreement (Kendall's W) first."""
    dataset_id = dataset_id_or_404(store, dataset) if dataset is not None else None
    return review.disagreements(store, dataset_id, limit=limit)


@router.get("/review/flagged")
def flagged(
    dataset: str | None = Query(None, max_length=256),
    status: Literal["skipped", "flagged"] | None = None,
    limit: int = Query(100, ge=1, le=1000),
    store: Store = Depends(read_store),
    user: dict = Depends(require_role(*REVIEW)),
) -> list[dict]:
    """Prompts people skipped or flagged, newest first: who, status, reason, comment, a preview, adjudicated."""
    dataset_id = dataset_id_or_404(store, dataset) if dataset is not None else None
    return review.flagged_and_skipped(store, dataset_id, status=status, limit=limit)


@router.get("/prompts/{prompt_id}/rankings")
def prompt_rankings(
    prompt_id: int, store: Store = Depends(read_store), user: dict = Depends(require_role(*REVIEW))
) -> dict:
    """The prompt, its answers with provenance and every annotator's ranking (ranks keyed by answer id)."""
    return review.prompt_rankings(store, prompt_id)


@router.post("/adjudications", status_code=201)
def adjudicate(
    body: AdjudicationIn, store: Store = Depends(get_store), user: dict = Depends(require_role(*REVIEW))
) -> dict:
    """Record the final ranking of a prompt (source 'adjudication'); a second one replaces the first."""
    ranking_id = review.adjudicate(store, body.prompt_id, body.ranks, reviewer=user["name"], comment=body.comment)
    return {"ranking_id": ranking_id, "prompt_id": body.prompt_id}
