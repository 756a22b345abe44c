"""Simulated annotators with a hidden true order, for bench/annotator_quality.py and its fast test.

    truth = simulate(store, "sim", SimConfig(prompts=500, per_prompt=3, seed=0))

Prompts of K answers each get a hidden true order. Each annotator works through a queue of items: the prompts
assigned to them (every prompt goes to `per_prompt` annotators drawn at random), with one gold item (a prompt of
known order, kept apart from the training prompts) mixed in at a random slot of every `1 / gold_rate` items, as the
real queue does. Each item shows the answers in a fresh random order. Behaviours (`kinds`):
- careful / sloppy with noise p: with probability p a ranking is a random order, else the true one;
- spammer-random: every ranking a random order;
- spammer-first: the answer shown first is ranked best and the rest follow the order shown.
Seconds per item: careful 20, sloppy 9, spammers 2 (log-normal spread); each ranking's created_at is when its
annotator finished it. Gold items are stored in gold_items / gold_answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from db.hashing import prompt_hash, text_hash
from db.staging import Batch

DEFAULT_KINDS = (("careful", 0.1),) * 14 + (("sloppy", 0.4),) * 4 + (("spammer-random", 1.0), ("spammer-first", 1.0))
SECONDS = {"careful": 20.0, "sloppy": 9.0, "spammer-random": 2.0, "spammer-first": 2.0}


@dataclass
class SimConfig:
    """The simulation's size and mix; the defaults are the issue's setting (20 annotators, 500 prompts, K=4)."""

    prompts: int = 500
    answers: int = 4
    per_prompt: int = 5
    gold_prompts: int = 25
    gold_rate: float = 0.05
    kinds: tuple[tuple[str, float], ...] = DEFAULT_KINDS
    seed: int = 0


@dataclass
class Truth:
    """What the simulation knows and the store does not (except gold): true ranks and each annotator's kind."""

    ranks: dict[str, dict[str, int]] = field(default_factory=dict)  # prompt key -> {answer key: true rank}
    kind: dict[str, str] = field(default_factory=dict)  # annotator -> behaviour
    gold_keys: set[str] = field(default_factory=set)


def _order(kind: str, noise: float, true: list[int], shown: list[int], rng) -> list[int]:
    """Ranks (1 best) by answer index, as this annotator would give them."""
    k = len(true)
    if kind == "spammer-first":
        ranks = [0] * k
        for place, idx in enumerate(shown):
            ranks[idx] = place + 1
        return ranks
    if kind == "spammer-random" or rng.random() < noise:
        return list(rng.permutation(k) + 1)
    return list(true)


def simulate(store, dataset: str, cfg: SimConfig | None = None) -> Truth:
    """Write the simulated prompts, answers and rankings into `dataset`; return the hidden truth."""
    cfg = cfg or SimConfig()
    rng = np.random.default_rng(cfg.seed)
    truth = Truth()
    names = [f"{kind}-{i:02d}" for i, (kind, _) in enumerate(cfg.kinds)]
    truth.kind = {n: kind for n, (kind, _) in zip(names, cfg.kinds, strict=True)}
    batch = Batch()
    prompts = []
    for p in range(cfg.prompts + cfg.gold_prompts):
        msgs = [{"role": "user", "content": f"Pregunta {p}: ¿cuál es mejor? 哪个更好 🤔"}]
        key = prompt_hash(msgs)
        texts = [f"Respuesta {j} a {p} · 回答 {j} ✅" for j in range(cfg.answers)]
        gens = [text_hash(t) for t in texts]
        batch.prompts.append({"key": key, "messages": _json(msgs), "source": "simulation"})
        for t, g in zip(texts, gens, strict=True):
            batch.generations.append({"prompt_key": key, "gen_key": g, "text": t, "kind": "model", "model": "sim"})
        true = list(rng.permutation(cfg.answers) + 1)
        truth.ranks[key] = dict(zip(gens, true, strict=True))
        prompts.append((key, gens, true))
    regular, gold = prompts[: cfg.prompts], prompts[cfg.prompts :]
    truth.gold_keys = {key for key, _, _ in gold}

    queues: dict[str, list] = {n: [] for n in names}
    for item in regular:
        for n in rng.choice(names, size=min(cfg.per_prompt, len(names)), replace=False):
            queues[n].append(item)
    block = max(1, round(1 / cfg.gold_rate)) if cfg.gold_rate > 0 else 0
    made = []  # (when, annotator, item): rankings are written in time order
    for n in names:
        items = list(queues[n])
        rng.shuffle(items)
        if block and gold:
            unseen = list(rng.permutation(len(gold)))
            mixed, i = [], 0
            while i < len(items):
                chunk = items[i : i + block - 1]
                if unseen:
                    chunk.insert(int(rng.integers(0, len(chunk) + 1)), gold[unseen.pop()])
                mixed.extend(chunk)
                i += block - 1
            items = mixed
        clock = 0.0
        for item in items:
            clock += float(rng.lognormal(np.log(SECONDS[truth.kind[n]]), 0.3))
            made.append((clock, n, item))
    made.sort(key=lambda m: m[0])
    noise_of = dict(zip(names, (x for _, x in cfg.kinds), strict=True))
    for seq, (_clock, n, (key, gens, true)) in enumerate(made):
        noise = noise_of[n]
        shown = list(rng.permutation(cfg.answers))
        ranks = _order(truth.kind[n], noise, true, shown, rng)
        rkey = f"r{seq}"
        secs = float(rng.lognormal(np.log(SECONDS[truth.kind[n]]), 0.3)) * cfg.answers / 4
        batch.rankings.append(
            {
                "ranking_key": rkey,
                "prompt_key": key,
                "annotator": n,
                "user_kind": "synthetic",
                "status": "submitted",
                "source": "human",
                "time_on_task_ms": int(secs * 1000),
                "source_record": f"sim:{seq}",
            }
        )
        for place, idx in enumerate(shown):
            batch.items.append({"ranking_key": rkey, "gen_key": gens[idx], "rank": int(ranks[idx]), "position": place})
    store.write_batch(dataset, batch, created_by="simulation")
    with store.transaction() as c:
        # when each ranking was made: the annotator's own clock, from a fixed start
        c.execute(
            """UPDATE rankings SET created_at = TIMESTAMP '2026-01-01 08:00:00' + to_milliseconds(t.ms)
               FROM (SELECT unnest(?::VARCHAR[]) AS rec, unnest(?::BIGINT[]) AS ms) t
               WHERE rankings.source_record = t.rec""",
            [[f"sim:{seq}" for seq in range(len(made))], [int(m[0] * 1000) for m in made]],
        )
        for key, gens, true in gold:
            pid = c.execute(
                "SELECT p.id FROM prompts p JOIN datasets d ON d.id = p.dataset_id "
                "WHERE d.name = ? AND p.content_hash = ?",
                [dataset, key],
            ).fetchall()[0][0]
            c.execute("INSERT INTO gold_items (prompt_id, kind, created_by) VALUES (?, 'order', 'simulation')", [pid])
            c.execute(
                """INSERT INTO gold_answers (prompt_id, generation_id, rank)
                   SELECT ?, g.id, t.rank FROM generations g
                   JOIN (SELECT unnest(?::VARCHAR[]) AS h, unnest(?::INTEGER[]) AS rank) t ON t.h = g.content_hash
                   WHERE g.prompt_id = ?""",
                [pid, gens, [int(x) for x in true], pid],
            )
    return truth


def true_pairs(store, dataset: str, truth: Truth) -> dict[tuple[int, int, int], int]:
    """{(prompt id, lo, hi): 1 when the answer with the lower generation id is truly better, else -1} for every
    pair of answers of the non-gold prompts (the true orders have no ties)."""
    rows = store.query(
        "SELECT p.id AS prompt_id, p.content_hash AS pk, g.id AS gid, g.content_hash AS gk FROM prompts p "
        "JOIN datasets d ON d.id = p.dataset_id JOIN generations g ON g.prompt_id = p.id WHERE d.name = ?",
        [dataset],
    )
    by_prompt: dict[int, list[tuple[int, int]]] = {}
    for r in rows:
        if r["pk"] in truth.gold_keys:
            continue
        by_prompt.setdefault(r["prompt_id"], []).append((r["gid"], truth.ranks[r["pk"]][r["gk"]]))
    out = {}
    for pid, gens in by_prompt.items():
        gens.sort()
        for i, (a, ra) in enumerate(gens):
            for b, rb in gens[i + 1 :]:
                out[(pid, a, b)] = 1 if ra < rb else -1
    return out


def _json(value) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)
