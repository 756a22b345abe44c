"""A dataset's annotation settings (db.settings): GET for reviewers and admins, PUT for admins.

GET /api/datasets/{name}/settings  -> {dataset, task, aspects, rationale, gold_rate, selection,
                                       presets: {helpsteer2: [...]}}
PUT /api/datasets/{name}/settings  {"task": "rank", "aspects": [...] | "helpsteer2", "rationale": "optional",
                                    "selection": "uncertainty"}
POST /api/datasets/{name}/priorities {"members": 5, "l2": 0.01, "seed": 0}  -> {dataset, pairs, members, ensemble,
                                    novelty}: recompute the scores the 'uncertainty' selection follows (admin)
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from db import settings
from db.store import Store
from serving.api.deps import get_store, read_store, require_role
from serving.api.queue import dataset_id_or_404

router = APIRouter(prefix="/api", tags=["settings"])


class AspectIn(BaseModel):
    name: str = Field(max_length=settings.MAX_NAME)
    min: float
    max: float
    description: str = Field(default="", max_length=settings.MAX_DESCRIPTION)
    required: bool = False


class SettingsIn(BaseModel):
    task: Literal["rank", "rate"] | None = None
    aspects: list[AspectIn] | Literal["helpsteer2"] | None = Field(
        default=None, description="the aspects rated per answer ([] for none), or 'helpsteer2' for its five on 0-4"
    )
    rationale: Literal["off", "optional", "required"] | None = None
    selection: Literal["order", "uncertainty"] | None = Field(
        default=None, description="the queue's order: prompt id, or highest stored priority (preflab prioritize) first"
    )


class PrioritiesIn(BaseModel):
    members: int = Field(default=5, ge=2, le=50, description="bootstrap members of the reward-model ensemble")
    l2: float = Field(default=0.01, gt=0, le=100, description="L2 penalty of each member's fit")
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


def _view(name: str, values: dict) -> dict:
    return {"dataset": name, **values, "presets": {"helpsteer2": settings.helpsteer2_aspects()}}


@router.get("/datasets/{name}/settings")
def get_settings(
    name: str, store: Store = Depends(read_store), user: dict = Depends(require_role("reviewer", "admin"))
) -> dict:
    """The dataset's task, aspects, rationale mode, gold rate and selection, with the Datasets page's presets."""
    return _view(name, settings.get_settings(store, dataset_id_or_404(store, name)))


@router.put("/datasets/{name}/settings")
def put_settings(
    name: str,
    body: SettingsIn,
    request: Request,
    store: Store = Depends(get_store),
    admin: dict = Depends(require_role("admin")),
) -> dict:
    """Change what is left out of the body stays. 400 naming the field (aspects[1].max, ...) for a bad aspect."""
    dataset_id = dataset_id_or_404(store, name)
    aspects = body.aspects
    if aspects == "helpsteer2":
        aspects = settings.helpsteer2_aspects()
    elif aspects is not None:
        aspects = [a.model_dump() for a in aspects]
    values = settings.set_settings(
        store, dataset_id, task=body.task, aspects=aspects, rationale=body.rationale, selection=body.selection
    )
    request.app.state.front.settings_changed(dataset_id)  # items leased ahead show the old settings
    return _view(name, values)


@router.post("/datasets/{name}/priorities")
def post_priorities(
    name: str,
    body: PrioritiesIn | None = None,
    store: Store = Depends(get_store),
    admin: dict = Depends(require_role("admin")),
) -> dict:
    """Recompute the dataset's active-selection scores in the server (serving.active.prioritize), so they can be
    refreshed between rounds while annotators work. 400 on `dataset` while it has no ranked pairs."""
    from serving.active.ensemble import EnsembleConfig
    from serving.active.prioritize import prioritize

    dataset_id_or_404(store, name)
    return prioritize(store, name, cfg=EnsembleConfig(**(body or PrioritiesIn()).model_dump()))
