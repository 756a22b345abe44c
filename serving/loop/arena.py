"""The loop's blind arena: parent and child answer held-out prompts, the rule judges, the verdicts are stored.

    result = run_arena(store, cfg, url=engine["url"], engine="loop-base", heldout=prompts, parent="p", child="c",
                       round_no=1)

Both models are served by one OpenAI-compatible engine. Each verdict is stored as an arena battle and vote by the
user 'synthetic-judge' (kind synthetic), so it flows back into preference pairs like a person's vote and stays off
the human leaderboard.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Collection

from db.errors import PrefLabError
from db.staging import Batch
from db.store import Store
from serving.loop.config import LoopConfig
from serving.loop.synthetic import judge, rule_reward

JUDGE = "synthetic-judge"


def run_arena(
    store: Store,
    cfg: LoopConfig,
    *,
    url: str,
    engine: str,
    heldout: list[str],
    parent: str,
    child: str,
    round_no: int,
    adapters: Collection[str] = (),
) -> dict:
    """Blind A/B on held-out prompts: each side answers, the order is a coin flip, the rule judges. Returns the
    tally (child's side), the leaderboard, the stored votes and the mean rule reward of each side. `adapters`
    names the served models that are LoRA adapters (their answers record it, as the sampler's do)."""
    from serving.arena.ratings import RatingsConfig, compute_leaderboard, encode_votes
    from serving.arena.style import controlled_win_rate, style_controlled
    from serving.loop.report import arena_tally

    rng = random.Random(f"arena:{cfg.seed}:{round_no}")
    answers = asyncio.run(collect_answers(url, heldout, [parent, child], cfg))
    votes, rewards, lengths = [], {parent: [], child: []}, {parent: [], child: []}
    for i, prompt in enumerate(heldout):
        for t in range(cfg.arena_turns):
            pa, ch = answers[parent][i][t], answers[child][i][t]
            for m, text in ((parent, pa), (child, ch)):
                rewards[m].append(rule_reward(prompt, text))
                lengths[m].append(len(text))
            a, b, text_a, text_b = (parent, child, pa, ch) if rng.random() < 0.5 else (child, parent, ch, pa)
            votes.append(
                {
                    "prompt": prompt,
                    "model_a": a,
                    "model_b": b,
                    "text_a": text_a,
                    "text_b": text_b,
                    "winner": judge(prompt, text_a, text_b),
                }
            )
    stored = store_votes(store, votes, engine=engine, dataset=f"{cfg.name}-heldout", adapters=adapters)
    board = compute_leaderboard(votes, RatingsConfig(bootstrap_rounds=500, seed=cfg.seed))
    models, a_idx, b_idx, score = encode_votes(votes)
    texts_a, texts_b = [v["text_a"] for v in votes], [v["text_b"] for v in votes]
    sc = style_controlled(
        models, a_idx, b_idx, score, texts_a, texts_b, bootstrap_rounds=200, seed=cfg.seed, samples=True
    )

    def mean(xs):
        return sum(xs) / len(xs) if xs else None

    mp, mc = mean(rewards[parent]), mean(rewards[child])
    return {
        "parent": parent,
        "prompts": len(heldout),
        "turns": cfg.arena_turns,
        "tally": arena_tally(votes, child),
        # the child's win probability with answer length and markdown held equal: a length exploit shows here
        "style_controlled": {**controlled_win_rate(sc, child, parent), "coefficients": sc["coefficients"]},
        "stored_votes": stored,
        "leaderboard": board.rows,
        "mean_reward": {
            "parent": mp,
            "child": mc,
            "delta": mc - mp,
            "mean_length": {"parent": mean(lengths[parent]), "child": mean(lengths[child])},
        },
    }


async def collect_answers(url: str, prompts: list[str], models: list[str], cfg: LoopConfig) -> dict[str, list]:
    """{model: [[turns answers] per prompt]} from an OpenAI-compatible engine; unseeded so the engine batches."""
    import httpx

    sem = asyncio.Semaphore(16)
    out: dict[str, list] = {m: [None] * len(prompts) for m in models}
    async with httpx.AsyncClient(base_url=url, timeout=600.0) as client:

        async def one(model: str, i: int) -> None:
            body = {
                "model": model,
                "messages": [{"role": "user", "content": prompts[i]}],
                "n": cfg.arena_turns,
                "max_tokens": cfg.max_tokens,
                "temperature": cfg.temperature,
                "top_p": cfg.top_p,
            }
            async with sem:
                r = await client.post("/chat/completions", json=body)
            if r.status_code != 200:
                raise PrefLabError(f"engine answered {r.status_code} for {model}: {r.text[:300]}")
            choices = sorted(r.json()["choices"], key=lambda c: c.get("index", 0))
            out[model][i] = [c["message"]["content"] or "" for c in choices]

        await asyncio.gather(*(one(m, i) for m in models for i in range(len(prompts))))
    return out


def store_votes(store: Store, votes: list[dict], *, engine: str, dataset: str, adapters: Collection[str] = ()) -> int:
    """Each verdict as an arena battle + vote by the user 'synthetic-judge' (kind synthetic): db.arena turns the
    vote into a two-answer ranking with source 'arena', so the verdicts flow back into pairs like people's.
    An answer of a model in `adapters` (served LoRA names) stores that name as its generation's adapter."""
    from db import arena

    judge_user = synthetic_user(store, JUDGE, dataset)
    for v in votes:
        messages = [{"role": "user", "content": v["prompt"]}]
        battle = arena.create_battle(
            store, v["model_a"], v["model_b"], created_by="preflab-loop", user_id=judge_user["id"]
        )
        turn = {
            "user": v["prompt"],
            "messages_a": messages,
            "messages_b": messages,
            "context": [],
            **{
                side: {"text": v[f"text_{side}"], "engine": engine, "adapter": _adapter(v[f"model_{side}"], adapters)}
                for side in ("a", "b")
            },
        }
        arena.save_turns(store, battle, [turn], False)
        arena.record_vote(store, battle, v["winner"], user=judge_user, comment="rule-based judge (preflab loop)")
    return len(votes)


def _adapter(model: str, adapters: Collection[str]) -> str | None:
    return model if model in adapters else None


def synthetic_user(store: Store, name: str, dataset: str) -> dict:
    """The user row `name` with kind 'synthetic' (created if missing; cannot log in: no password)."""
    from db.users import get_user

    user = get_user(store, name)
    if user is None:
        # A staged ranking that matches no prompt adds only its annotator: Store.commit_staged creates users
        # from stage_rankings with the given kind, and that is the one place the kind can be set.
        store.write_batch(
            dataset,
            Batch(
                rankings=[{"ranking_key": "none", "prompt_key": "none", "annotator": name, "user_kind": "synthetic"}]
            ),
            created_by="preflab-loop",
        )
        user = get_user(store, name)
    return user
