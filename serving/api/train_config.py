"""The training stages and the config fields the admin Training page offers (admin only).

    GET /api/train/stages   {"stages": [{"stage", "config_class", "doc", "needs_reward_model", "fields": [...]}]}

Each field: name, type, default (the config class's own), value (the page's starting value), help, group and
choices (a list to pick from, or null). The page builds its form from this answer, so the defaults live in one
place: the stage config classes in alignment/ (`preflab train STAGE --help-config` prints the same fields).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from alignment import STAGES
from serving.api.deps import require_role

router = APIRouter(prefix="/api", tags=["training runs"])


@router.get("/train/stages")
def train_stages(user: dict = Depends(require_role("admin"))) -> dict:
    """Every training stage, in pipeline order, with the fields the Training page offers and their defaults."""
    from alignment.config import config_class, page_fields  # TRL loads on the first call, not at server start

    stages = []
    for stage in STAGES:
        cls = config_class(stage)
        stages.append(
            {
                "stage": stage,
                "config_class": cls.__name__,
                "doc": (cls.__doc__ or "").strip(),
                "needs_reward_model": cls.needs_reward_model,
                "fields": page_fields(stage),
            }
        )
    return {"stages": stages}
