"""Fit the active-selection estimate (serving.active.ensemble) on a dataset's labels and store a score per prompt.

    report = prioritize(store, "demo")     # {"dataset", "pairs", "ensemble", "novelty", "members"}

Prompts with two or more answers get the ensemble's uncertainty about their order ('ensemble'); prompts with fewer
get their novelty ('novelty'); gold prompts get none. The dataset's earlier scores are replaced in one transaction.
Run it again after each round of labels: the queue (selection 'uncertainty') and `preflab sample --select
uncertainty` read whatever was stored last.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from db import priority
from db.errors import InputError
from serving.active.ensemble import EnsembleConfig, features, fit_ensemble, novelty, prompt_uncertainty

log = logging.getLogger(__name__)

Embed = Callable[[list[str]], np.ndarray]  # texts -> unit vectors, one row each


def _default_embed(texts: list[str]) -> np.ndarray:
    from serving.rag.embed import embed_texts  # torch: only when scores are computed

    return embed_texts(texts)


def _embed_unique(texts: list[str], embed: Embed) -> dict[str, np.ndarray]:
    unique = list(dict.fromkeys(texts))
    vectors = embed(unique) if unique else np.zeros((0, 0))
    return dict(zip(unique, vectors, strict=True))


def prioritize(store, dataset: str, *, cfg: EnsembleConfig | None = None, embed: Embed | None = None) -> dict:
    """Score every prompt of `dataset` and store the scores (db.priority); returns counts of what was stored.

    InputError when the dataset has no consensus pairs yet (the estimate is fitted on them; until then the queue's
    'uncertainty' selection hands prompts out in id order). `embed` replaces the sentence-embedding model (tests,
    bench/active.py with its cache)."""
    cfg = cfg or EnsembleConfig()
    embed = embed or _default_embed
    dataset_id = store.dataset_id(dataset)
    prompt_texts, answers = priority.dataset_texts(store, dataset_id)
    # gold prompts are checks, not training data
    pairs = [p for p in priority.labelled_pairs(store, dataset_id) if p[0] in prompt_texts]
    if not pairs:
        raise InputError(
            f"dataset '{dataset}' has no ranked pairs yet: label a first round in prompt order, then prioritize",
            field="dataset",
        )
    vec = _embed_unique([*prompt_texts.values(), *(t for rows in answers.values() for _, t in rows)], embed)
    answer_of = {gid: (pid, vec[text]) for pid, rows in answers.items() for gid, text in rows}

    def phi(gids: list[int]) -> np.ndarray:
        return features(
            np.stack([vec[prompt_texts[answer_of[g][0]]] for g in gids]), np.stack([answer_of[g][1] for g in gids])
        )

    chosen, rejected = phi([p[1] for p in pairs]), phi([p[2] for p in pairs])
    weights = fit_ensemble(chosen - rejected, np.array([p[0] for p in pairs]), cfg)
    labelled = np.stack([vec[prompt_texts[pid]] for pid in dict.fromkeys(p[0] for p in pairs)])
    rows: list[tuple[int, float, str]] = []
    for pid, text in prompt_texts.items():
        gids = [g for g, _ in answers.get(pid, [])]
        if len(gids) >= 2:
            rows.append((pid, prompt_uncertainty(weights @ phi(gids).T), "ensemble"))
        else:
            rows.append((pid, float(novelty(vec[text][None, :], labelled)[0]), "novelty"))
    priority.replace_priorities(store, dataset_id, rows)
    counts = {e: sum(1 for r in rows if r[2] == e) for e in priority.ESTIMATORS}
    log.info("prioritized %s: %s from %d pairs", dataset, counts, len(pairs))
    return {"dataset": dataset, "pairs": len(pairs), "members": cfg.members, **counts}
