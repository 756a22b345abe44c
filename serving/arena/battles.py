"""Blind A/B battles: two hidden models answer the same conversation; a person votes; names are revealed.

    battle = start_battle(store, user, models=None, rag={"collection": "handbook", "k": 4})  # draws two
    turn = await run_turn(store, battle["battle_id"], "How do I reset my password?", user=user)
    async for event in stream_turn(store, battle_id, "...", user=user):  # {"side", "delta"} ... {"done": ...}
    reveal = vote(store, battle_id, "a", user=user)          # {"model_a": ..., "model_b": ..., ...}

With RAG on, retrieval runs once per turn and the *same* context goes to both sides; each answer gets its
citations (which of [1], [2], ... it used). Each side keeps its own history for later turns. An answer
that names a model (its own or the other's registered name, or a known family such as gpt, llama, qwen)
flags the battle (identity_leak); the leaderboard can leave flagged battles out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
import time
from datetime import datetime

import httpx

from db import arena as arena_db
from db.errors import InputError, LimitError
from db.store import Store
from serving.rag.augment import augment, cited_indices

log = logging.getLogger(__name__)

KNOWN_FAMILIES = (
    "gpt",
    "chatgpt",
    "openai",
    "llama",
    "qwen",
    "tongyi",
    "claude",
    "anthropic",
    "mistral",
    "mixtral",
    "gemini",
    "gemma",
    "deepseek",
    "vicuna",
    "falcon",
    "grok",
    "ernie",
    "phi-3",
    "command-r",
    "cohere",
    "olmo",
    "smollm",
)
# name parts that say nothing about identity (a model called "tiny-sft" should not flag every "tiny")
GENERIC_PARTS = {
    "tiny",
    "small",
    "base",
    "model",
    "chat",
    "instruct",
    "sft",
    "dpo",
    "kto",
    "ppo",
    "rloo",
    "grpo",
    "lora",
    "adapter",
    "merged",
    "reward",
    "the",
    "final",
    "best",
    "test",
    "demo",
    "new",
    "old",
    "run",
}
DEFAULT_PARAMS = {"temperature": 0.7, "top_p": 0.95, "max_tokens": 256}


def leak_terms(model_names: list[str]) -> list[str]:
    """Words that reveal identity: the registered names, their distinctive parts, and known families."""
    terms = set(KNOWN_FAMILIES)
    for name in model_names:
        if name.lower() not in GENERIC_PARTS:  # a model literally called "tiny" cannot flag every "tiny"
            terms.add(name.lower())
        for part in re.split(r"[-_/:.@\s]+", name.lower()):
            alpha = re.match(r"[a-z]+", part)
            if alpha and len(alpha.group(0)) >= 3 and alpha.group(0) not in GENERIC_PARTS:
                terms.add(alpha.group(0))
    return sorted(terms)


def detect_identity_leak(text: str, model_names: list[str]) -> list[str]:
    """The identity words found in `text` (whole-word, case-insensitive; 'qwen2' counts as 'qwen')."""
    found = []
    low = text.lower()
    for term in leak_terms(model_names):
        if re.search(r"(?<![a-z0-9])" + re.escape(term) + r"(?![a-z])", low):
            found.append(term)
    return found


def available_models() -> list[str]:
    """Model names that a running engine serves (base models and loaded adapters)."""
    from serving.engines import registry

    names = []
    for e in registry.list_engines():
        if e["backend"] == "external" or e["alive"]:
            names.extend(e["models"])
    return sorted(set(names))


def start_battle(
    store: Store,
    user: dict,
    *,
    models: list[str] | None = None,
    rag: dict | None = None,
    rng: random.Random | None = None,
) -> dict:
    """Create a battle between two distinct models (drawn from the served ones when not given), in random
    A/B order. Returns {battle_id, rag}; the names stay in the database until the vote."""
    rng = rng or random.Random()
    if models:
        if len(models) != 2 or models[0] == models[1]:
            raise InputError("pick two different models, e.g. models: ['tiny', 'sft1']", field="models")
        pair = list(models)
        rng.shuffle(pair)  # the person who picked them still should not know which side is which
    else:
        pool = available_models()
        if len(pool) < 2:
            raise InputError(
                f"the arena needs two served models; running engines serve {pool or 'none'}. "
                "Start another engine or load an adapter (preflab engine start ... --lora).",
                field="models",
            )
        pair = rng.sample(pool, 2)
    collection, k = None, None
    if rag and rag.get("collection"):
        from db import rag_store

        collection = rag_store.get_collection(store, rag["collection"])["name"]
        k = int(rag.get("k") or 4)
    battle_id = arena_db.create_battle(
        store, pair[0], pair[1], created_by=user["name"], user_id=user.get("id"), rag_collection=collection, rag_k=k
    )
    return {"battle_id": battle_id, "rag": {"collection": collection, "k": k} if collection else None}


def _prepare(
    store: Store, battle_id: int, message: str, user: dict
) -> tuple[dict, list[dict], list[dict], list[dict]]:
    """The battle (if it is `user`'s), each side's messages for this turn, and the shared citations."""
    if not isinstance(message, str) or not message.strip():
        raise InputError("the message is empty", field="message")
    battle = arena_db.get_battle(store, battle_id, user=user)
    if battle["voted"]:
        raise InputError(f"battle {battle_id} is over (voted); start a new one", field="battle_id")
    citations: list[dict] = []
    content = message
    if battle["rag_collection"]:
        from serving.rag.retrieve import retrieve

        hits = retrieve(store, battle["rag_collection"], message, k=battle["rag_k"] or 4)
        content, citations = augment(message, hits)
    sides = []
    for side in ("a", "b"):
        history: list[dict] = []
        for t in battle["turns"]:
            history += [{"role": "user", "content": t["content"]}, {"role": "assistant", "content": t[side]["text"]}]
        sides.append(history + [{"role": "user", "content": content}])
    return battle, sides[0], sides[1], citations


def _target(model: str) -> dict:
    from serving.engines.registry import resolve_model

    return resolve_model(model)


def _finish_turn(
    store: Store, battle: dict, message: str, msgs_a: list[dict], citations: list[dict], answers: dict[str, dict]
) -> dict:
    names = [battle["model_a"], battle["model_b"]]
    leak = []
    for side in ("a", "b"):
        ans = answers[side]
        ans["citations"] = [c for c in citations if c["index"] in cited_indices(ans["text"], len(citations))]
        found = detect_identity_leak(ans["text"], names)
        ans["identity_leak"] = found
        leak += found
    turn = {
        "user": message,
        "content": msgs_a[-1]["content"],
        "messages_a": msgs_a,
        "context": citations,
        "a": answers["a"],
        "b": answers["b"],
    }
    turns = battle["turns"] + [turn]
    arena_db.save_turns(store, battle["id"], turns, bool(leak))
    return public_turn(turn, len(turns), bool(leak) or battle["identity_leak"])


def public_turn(turn: dict, number: int, identity_leak: bool) -> dict:
    """What the page sees before the vote: answers, citations, the shared context; no model names."""
    strip = ("model", "engine", "adapter")
    return {
        "turn": number,
        "user": turn["user"],
        "context": turn["context"],
        "identity_leak": identity_leak,
        "a": {k: v for k, v in turn["a"].items() if k not in strip},
        "b": {k: v for k, v in turn["b"].items() if k not in strip},
    }


async def _complete(client: httpx.AsyncClient, model: str, messages: list[dict], params: dict) -> dict:
    target = _target(model)
    headers = {"Authorization": f"Bearer {target['api_key']}"} if target.get("api_key") else {}
    t0 = time.perf_counter()
    r = await client.post(
        target["url"] + "/chat/completions",
        headers=headers,
        json={**params, "model": target["model"], "messages": messages},
    )
    if r.status_code >= 400:
        raise InputError(f"the engine for one side answered {r.status_code}: {r.text[:300]}", field="model")
    data = r.json()
    choice = data["choices"][0]
    return {
        "text": choice["message"]["content"] or "",
        "finish_reason": choice.get("finish_reason"),
        "latency_ms": round((time.perf_counter() - t0) * 1000, 1),
        "params": params,
        "completion_tokens": (data.get("usage") or {}).get("completion_tokens"),
        "model": model,
        "engine": target["engine"],
        "adapter": target.get("adapter"),
    }


async def run_turn(store: Store, battle_id: int, message: str, *, user: dict, params: dict | None = None) -> dict:
    """Send `message` to both sides of `user`'s battle at once; store and return the turn (without model names)."""
    params = {**DEFAULT_PARAMS, **(params or {})}
    battle, msgs_a, msgs_b, citations = _prepare(store, battle_id, message, user)
    async with httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=5.0)) as client:
        a, b = await asyncio.gather(
            _complete(client, battle["model_a"], msgs_a, params), _complete(client, battle["model_b"], msgs_b, params)
        )
    return _finish_turn(store, battle, message, msgs_a, citations, {"a": a, "b": b})


async def stream_turn(store: Store, battle_id: int, message: str, *, user: dict, params: dict | None = None):
    """Like run_turn, as events: {"context": [...]} first, then {"side", "delta"} as tokens arrive on either
    side, then {"done": true, "turn": <public turn>}. The turn is stored before the last event."""
    params = {**DEFAULT_PARAMS, **(params or {})}
    battle, msgs_a, msgs_b, citations = _prepare(store, battle_id, message, user)
    yield {"context": citations}
    queue: asyncio.Queue = asyncio.Queue()
    answers: dict[str, dict] = {}

    async def pump(client: httpx.AsyncClient, side: str, model: str, messages: list[dict]) -> None:
        try:
            target = _target(model)
            headers = {"Authorization": f"Bearer {target['api_key']}"} if target.get("api_key") else {}
            t0, parts, finish = time.perf_counter(), [], None
            body = {**params, "model": target["model"], "messages": messages, "stream": True}
            async with client.stream("POST", target["url"] + "/chat/completions", json=body, headers=headers) as r:
                if r.status_code >= 400:
                    raise InputError(f"the engine for side {side} answered {r.status_code}", field="model")
                async for line in r.aiter_lines():
                    if not line.startswith("data:") or line.strip() == "data: [DONE]":
                        continue
                    chunk = json.loads(line[5:])
                    for ch in chunk.get("choices") or []:
                        delta = (ch.get("delta") or {}).get("content")
                        if delta:
                            parts.append(delta)
                            await queue.put({"side": side, "delta": delta})
                        finish = ch.get("finish_reason") or finish
            answers[side] = {
                "text": "".join(parts),
                "finish_reason": finish,
                "params": params,
                "latency_ms": round((time.perf_counter() - t0) * 1000, 1),
                "model": model,
                "engine": target["engine"],
                "adapter": target.get("adapter"),
            }
        except Exception as e:  # reported to the page as an event; the turn is not stored
            await queue.put({"side": side, "error": str(e)})
        finally:
            await queue.put({"side": side, "end": True})

    async with httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=5.0)) as client:
        tasks = [
            asyncio.create_task(pump(client, "a", battle["model_a"], msgs_a)),
            asyncio.create_task(pump(client, "b", battle["model_b"], msgs_b)),
        ]
        ended = 0
        while ended < 2:
            event = await queue.get()
            if event.get("end"):
                ended += 1
                continue
            yield event
        await asyncio.gather(*tasks)
    if set(answers) == {"a", "b"}:
        yield {"done": True, "turn": _finish_turn(store, battle, message, msgs_a, citations, answers)}
    else:
        yield {"done": True, "error": "one side failed; nothing was stored, send the message again"}


def vote(
    store: Store, battle_id: int, winner: str, *, user: dict, comment: str | None = None, daily_cap: int | None = None
) -> dict:
    """Record the vote on `user`'s own battle and reveal the names. `daily_cap`: the most votes one user may cast
    in a day (ApiError 429 past it), so nobody can flood the leaderboard."""
    if daily_cap is not None and arena_db.votes_today(store, user["id"], datetime.now()) >= daily_cap:
        raise LimitError(f"you have cast {daily_cap} arena votes today, the most one person may; thank you")
    result = arena_db.record_vote(store, battle_id, winner, user=user, comment=comment)
    battle = arena_db.get_battle(store, battle_id)
    return {
        **result,
        "battle_id": battle_id,
        "winner": winner,
        "model_a": battle["model_a"],
        "model_b": battle["model_b"],
        "identity_leak": battle["identity_leak"],
    }


def leaderboard(
    store: Store,
    *,
    exclude_flagged: bool = False,
    bootstrap_rounds: int = 1000,
    source: str = "human",
    category: str | None = None,
) -> dict:
    """Bradley-Terry ratings with CIs, Elo, vote counts and the win-rate matrix over stored votes of `source`:
    people's by default; the loop's synthetic judge never mixes into them (source 'synthetic' or 'all' asks).
    `style_controlled` holds the ratings with answer length and markdown held equal (serving.arena.style).
    `category`: only that category's votes (db.arena.vote_categories lists them)."""
    from serving.arena.ratings import RatingsConfig, compute_leaderboard, encode_votes
    from serving.arena.style import style_controlled

    votes = arena_db.list_votes(store, exclude_flagged=exclude_flagged, source=source, texts=True, category=category)
    board = compute_leaderboard(votes, RatingsConfig(bootstrap_rounds=bootstrap_rounds))
    out = board.as_dict()
    models, a, b, s = encode_votes(votes)
    out["style_controlled"] = style_controlled(
        models,
        a,
        b,
        s,
        [v["text_a"] for v in votes],
        [v["text_b"] for v in votes],
        bootstrap_rounds=min(bootstrap_rounds, 200),
    )
    out.update(exclude_flagged=exclude_flagged, source=source, **arena_db.vote_counts(store, source=source))
    out.update(category=category, categories=arena_db.vote_categories(store, source=source))
    return out


OUTLIER_MIN_VOTES = 20
OUTLIER_Z = -3.0


def voters(store: Store, *, source: str = "human") -> list[dict]:
    """Per voter, how their votes sit with the consensus ratings: of their decisive votes (a or b), how many went
    to the model the Bradley-Terry fit of all votes favours (`agree`) against how many the fit expects (`expected`,
    the sum of its win probabilities), and the z-score of the difference. A voter with at least OUTLIER_MIN_VOTES
    decisive votes and z below OUTLIER_Z votes against the crowd far more than chance explains: `flagged`, for an
    admin to look at (a vote bot, a fan of one model, someone voting at random). Worst first."""
    from serving.arena.ratings import RatingsConfig, compute_leaderboard

    votes = arena_db.list_votes(store, source=source)
    board = compute_leaderboard(votes, RatingsConfig(bootstrap_rounds=0))
    rating = {r["model"]: r["rating"] for r in board.rows}
    per: dict[str, dict] = {}
    for v in votes:
        blank = {"voter": v["voter"], "votes": 0, "decisive": 0, "agree": 0, "expected": 0.0, "var": 0.0}
        row = per.setdefault(v["voter"] or "(unknown)", blank)
        row["votes"] += 1
        if v["winner"] not in ("a", "b"):
            continue
        p_a = 1.0 / (1.0 + 10 ** ((rating[v["model_b"]] - rating[v["model_a"]]) / 400.0))
        favoured = (p_a >= 0.5) == (v["winner"] == "a")
        row["decisive"] += 1
        row["agree"] += favoured
        p_fav = max(p_a, 1 - p_a)
        row["expected"] += p_fav
        row["var"] += p_fav * (1 - p_fav)
    out = []
    for row in per.values():
        z = (row["agree"] - row["expected"]) / math.sqrt(row["var"]) if row["var"] > 0 else None
        out.append(
            {
                "voter": row["voter"],
                "votes": row["votes"],
                "decisive": row["decisive"],
                "agree": row["agree"],
                "expected": round(row["expected"], 2),
                "z": None if z is None else round(z, 2),
                "flagged": z is not None and row["decisive"] >= OUTLIER_MIN_VOTES and z < OUTLIER_Z,
            }
        )
    out.sort(key=lambda r: (r["z"] is None, r["z"] if r["z"] is not None else 0))
    return out
