"""Arena routes: battles, turns (streamed or not), votes and the leaderboard. Any signed-in user may battle.

POST /api/arena/battles {"models": ["tiny", "sft1"] | null, "rag": {"collection": "docs", "k": 4} | null}
     -> {"battle_id", "rag"}
POST /api/arena/battles/{id}/turn {"message": "...", "stream": false, "params": {"max_tokens": 128}}
     -> {"turn", "user", "context", "identity_leak", "a": {"text", "citations", ...}, "b": {...}}
     with "stream": true: text/event-stream of JSON events (see serving.arena.battles.stream_turn)
POST /api/arena/votes {"battle_id", "winner": "a"|"b"|"tie"|"both_bad", "comment"}
     -> {"vote_id", "ranking_id", "model_a", "model_b", ...}   (names revealed now)
GET  /api/arena/leaderboard?exclude_flagged=true&bootstrap_rounds=1000&source=human|synthetic|all&category=NAME
     -> raw and style-controlled ratings, and the categories with their vote counts
GET  /api/arena/voters (admin) -> each voter's agreement with the ratings, outliers flagged
A user may cast ServerConfig.arena_daily_votes votes a day (429 beyond).
POST .../turn and /api/arena/votes act only on the caller's own battle (another's answers 404); battle ids are
random, not sequential.
GET  /api/arena/models  -> {"models": [...]} the names a battle can use
GET  /api/arena/collections -> {"collections": [{name, documents, chunks, ...}]} for the RAG toggle
"""

from __future__ import annotations

import json
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from db.store import Store
from serving.api.deps import ApiError, current_user, get_store
from serving.arena import battles as arena

router = APIRouter(tags=["arena"])


class RagOptions(BaseModel):
    collection: str
    k: int = Field(4, ge=1, le=20)


class BattleIn(BaseModel):
    models: list[str] | None = None
    rag: RagOptions | None = None


class TurnIn(BaseModel):
    message: str = Field(..., min_length=1, max_length=32_000)
    stream: bool = False
    params: dict | None = None


class VoteIn(BaseModel):
    battle_id: int
    winner: Literal["a", "b", "tie", "both_bad"]
    comment: str | None = Field(None, max_length=4000)


ALLOWED_PARAMS = {"temperature", "top_p", "max_tokens", "seed", "stop"}


def _params(params: dict | None) -> dict:
    bad = set(params or {}) - ALLOWED_PARAMS
    if bad:
        raise ApiError(
            400, f"unknown sampling parameter(s) {sorted(bad)}; allowed: {sorted(ALLOWED_PARAMS)}", field="params"
        )
    return params or {}


@router.get("/api/arena/models")
def arena_models(user: dict = Depends(current_user)) -> dict:
    return {"models": arena.available_models()}


@router.get("/api/arena/collections")
def arena_collections(store: Store = Depends(get_store), user: dict = Depends(current_user)) -> dict:
    """RAG collections a battle can retrieve from."""
    from db import rag_store

    return {"collections": rag_store.list_collections(store)}


@router.post("/api/arena/battles")
def create_battle(body: BattleIn, store: Store = Depends(get_store), user: dict = Depends(current_user)) -> dict:
    rag = body.rag.model_dump() if body.rag else None
    return arena.start_battle(store, user, models=body.models, rag=rag)


@router.post("/api/arena/battles/{battle_id}/turn")
async def battle_turn(
    battle_id: int, body: TurnIn, store: Store = Depends(get_store), user: dict = Depends(current_user)
):
    params = _params(body.params)
    if not body.stream:
        return await arena.run_turn(store, battle_id, body.message, user=user, params=params)
    events = arena.stream_turn(store, battle_id, body.message, user=user, params=params)
    first = await events.__anext__()  # errors before any token (unknown battle, empty message) stay 4xx

    async def sse():
        yield f"data: {json.dumps(first, ensure_ascii=False)}\n\n"
        async for event in events:
            yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"

    return StreamingResponse(sse(), media_type="text/event-stream")


@router.post("/api/arena/votes")
def cast_vote(
    body: VoteIn, request: Request, store: Store = Depends(get_store), user: dict = Depends(current_user)
) -> dict:
    cap = request.app.state.config.arena_daily_votes
    return arena.vote(store, body.battle_id, body.winner, user=user, comment=body.comment, daily_cap=cap)


@router.get("/api/arena/leaderboard")
def get_leaderboard(
    exclude_flagged: bool = False,
    bootstrap_rounds: int = 1000,
    source: Literal["human", "synthetic", "all"] = "human",
    category: str | None = Query(None, max_length=256),
    store: Store = Depends(get_store),
    user: dict = Depends(current_user),
) -> dict:
    """Ratings from people's votes by default; `source=synthetic` gives the loop judge's, `all` both; `category`
    one category's votes (the answer lists them with their vote counts)."""
    if not 0 <= bootstrap_rounds <= 10_000:
        raise ApiError(400, "bootstrap_rounds must be between 0 and 10000", field="bootstrap_rounds")
    return arena.leaderboard(
        store, exclude_flagged=exclude_flagged, bootstrap_rounds=bootstrap_rounds, source=source, category=category
    )


@router.get("/api/arena/voters")
def get_voters(
    source: Literal["human", "synthetic", "all"] = "human",
    store: Store = Depends(get_store),
    user: dict = Depends(current_user),
) -> list[dict]:
    """Admins: each voter's votes against the consensus ratings, outliers flagged (serving.arena.battles.voters)."""
    if user["role"] != "admin":
        raise ApiError(403, "only an admin may see how each person voted")
    return arena.voters(store, source=source)
