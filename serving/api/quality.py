"""Annotator quality and gold items (reviewer, admin): the Annotators page's table and series, pausing and weighting
an annotator, marking prompts gold, a dataset's gold rate.

An annotator never reaches these routes, and nothing an annotator's routes return says whether an item is gold.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, StrictInt

from db import gold, quality
from db.errors import InputError, NotFoundError
from db.store import Store
from serving.api.deps import get_store, read_store, require_role
from serving.api.queue import dataset_id_or_404

router = APIRouter(prefix="/api", tags=["quality"])

REVIEW = ("reviewer", "admin")


class ControlIn(BaseModel):
    dataset: str = Field(max_length=256)
    paused: bool | None = None
    weight: float | None = Field(default=None, ge=0, le=1, description="0 excludes the annotator, 1 counts fully")


class GoldIn(BaseModel):
    prompt_id: StrictInt
    ranks: dict[str, StrictInt] = Field(
        description="generation id -> known rank (1 best, ties equal); kind 'best': only the best answer, ranked 1",
        max_length=64,
    )
    kind: Literal["order", "best"] = "order"


class GoldRateIn(BaseModel):
    dataset: str = Field(max_length=256)
    rate: float = Field(ge=0, le=0.5, description="share of each annotator's items that are gold (0 turns it off)")


@router.get("/annotators")
def annotators(
    dataset: str = Query(max_length=256),
    too_fast_s: float | None = Query(None, gt=0, le=3600),
    store: Store = Depends(read_store),
    user: dict = Depends(require_role(*REVIEW)),
) -> dict:
    """Per annotator: quality (Dawid-Skene reliability), leave-one-out agreement, gold accuracy, speed, position
    bias, tie and "all bad" rates, paused and weight, and whether gold flags them; plus per-day series."""
    dataset_id = dataset_id_or_404(store, dataset)
    rows = quality.annotator_quality(store, dataset_id, too_fast_s=too_fast_s)
    controls = quality.controls(store, dataset_id)
    flags = quality.gold_flags(store, dataset_id)
    for row in rows:
        c = controls.get(row["annotator"], {})
        row["paused"] = bool(c.get("paused", False))
        row["weight"] = c.get("weight", 1.0)
        row["gold_flagged"] = flags.get(row["annotator"], {}).get("flagged", False)
    return {"dataset": dataset, "annotators": rows, "series": quality.annotator_series(store, dataset_id)}


@router.post("/annotators/{name}/controls")
def control(
    name: str, body: ControlIn, store: Store = Depends(get_store), user: dict = Depends(require_role(*REVIEW))
) -> dict:
    """Pause or resume an annotator in a dataset, or set the weight of their votes."""
    dataset_id = dataset_id_or_404(store, body.dataset)
    return quality.set_control(store, dataset_id, name, paused=body.paused, weight=body.weight, by=user["name"])


@router.get("/gold")
def gold_items(
    dataset: str = Query(max_length=256),
    store: Store = Depends(read_store),
    user: dict = Depends(require_role(*REVIEW)),
) -> dict:
    """The dataset's gold items and gold rate."""
    dataset_id = dataset_id_or_404(store, dataset)
    return {"dataset": dataset, "rate": gold.gold_rate(store, dataset_id), "items": gold.list_gold(store, dataset_id)}


@router.post("/gold", status_code=201)
def mark_gold(body: GoldIn, store: Store = Depends(get_store), user: dict = Depends(require_role(*REVIEW))) -> dict:
    """Make a prompt a gold item with its known order (or only its best answer); again replaces the order."""
    try:
        ranks = {int(g): r for g, r in body.ranks.items()}
    except ValueError:
        raise InputError("ranks are keyed by answer (generation) ids", field="ranks") from None
    return gold.mark_gold(store, body.prompt_id, ranks, kind=body.kind, by=user["name"])


@router.delete("/gold/{prompt_id}")
def unmark_gold(
    prompt_id: int, store: Store = Depends(get_store), user: dict = Depends(require_role(*REVIEW))
) -> dict:
    """Make a gold prompt an ordinary one again."""
    if not gold.unmark_gold(store, prompt_id):
        raise NotFoundError(f"prompt {prompt_id} is not a gold item")
    return {"prompt_id": prompt_id, "gold": False}


@router.post("/gold/rate")
def gold_rate(
    body: GoldRateIn, store: Store = Depends(get_store), user: dict = Depends(require_role(*REVIEW))
) -> dict:
    """Set the share of each annotator's items that are gold in a dataset."""
    dataset_id = dataset_id_or_404(store, body.dataset)
    return {"dataset": body.dataset, "rate": gold.set_gold_rate(store, dataset_id, body.rate)}
