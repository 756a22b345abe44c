"""Thumbs up or down on one answer outside the queue: POST /api/feedback, for any signed-in user.

An arena answer is named by its generation id or by its battle and side ({"battle_id", "side": "a"|"b"}); either
way it must be from a battle of the caller's (another user's answers answer 404, as if they did not exist).
Answers of the /v1 gateway's chat are not stored as generations, so they take no thumbs here.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, StrictBool, StrictInt

from db import arena
from db.errors import ConflictError, NotFoundError
from db.store import Store
from serving.api.deps import ApiError, current_user, get_store

router = APIRouter(prefix="/api", tags=["feedback"])


class FeedbackIn(BaseModel):
    generation_id: StrictInt | None = Field(default=None, description="the answer (a generation id)")
    battle_id: StrictInt | None = Field(default=None, description="or the arena battle of the answer ...")
    side: Literal["a", "b"] | None = Field(default=None, description="... and its side")
    label: StrictBool = Field(description="true: thumbs up, false: thumbs down")
    comment: str | None = Field(default=None, max_length=arena.MAX_COMMENT)


@router.post("/feedback", status_code=201)
def give_feedback(body: FeedbackIn, store: Store = Depends(get_store), user: dict = Depends(current_user)) -> dict:
    """Store your thumbs on one answer you were shown in the arena (source 'arena'); again on the same answer
    replaces it. {id, generation_id, prompt_id, label, source}. 404 for an answer not from a battle of yours,
    409 for a battle not voted yet (its answers are stored with the vote)."""
    try:
        gid = body.generation_id
        if gid is None:
            if body.battle_id is None or body.side is None:
                raise ApiError(400, "name the answer: generation_id, or battle_id and side", field="generation_id")
            gid = arena.answer_of_battle(store, body.battle_id, body.side, user=user)
        return arena.give_feedback(store, gid, body.label, user=user, comment=body.comment)
    except NotFoundError as e:
        raise ApiError(404, str(e), field="battle_id" if body.generation_id is None else "generation_id") from None
    except ConflictError as e:
        raise ApiError(409, str(e), field="battle_id") from None
