"""The estimate behind active selection: a bootstrap ensemble of linear Bradley-Terry reward models.

Features. An answer a to prompt p is phi(p, a) = [e_a, e_p * e_a] (768 numbers): e_a and e_p are the frozen
all-MiniLM-L6-v2 embeddings (unit length, serving.rag.embed) of the answer and of the prompt, and e_p * e_a is their
element-wise product, whose sum is the cosine of the two; so a linear model can weigh what an answer says and how
well it fits its prompt.

Model. reward(p, a) = w . phi(p, a); P(a beats b) = sigmoid(reward(p, a) - reward(p, b)) (Bradley-Terry), fitted
on consensus pairs by Newton's method on the logistic loss with an L2 penalty `l2` * |w|^2 / 2.

Ensemble. `members` models, each fitted on a bootstrap resample of the labelled *prompts* (pairs of one prompt
stay together: they come from the same rankings).

Uncertainty of a prompt with answers (estimator 'ensemble'). For every pair (i, j) of its answers, member m says
p_m = P(i beats j); with p = mean_m p_m,

    u(i, j) = p (1 - p) + var_m(p_m)        # closeness to a coin flip + disagreement of the members

and the prompt's score is the mean of u over its pairs: 0 when every member is sure and agrees, at most 0.5.

Novelty of a prompt without answers (estimator 'novelty'): 1 - max cos(e_p, e_q) over the labelled prompts q, the
distance in embedding space to the nearest prompt the model has learned from (0 for a prompt already labelled,
up to 2). Nothing about its answers is known yet, so this is the documented stand-in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(kw_only=True)
class EnsembleConfig:
    members: int = 5  # enough for a variance across members; each costs one fit
    l2: float = 0.01  # penalty on |w|^2 / 2 per pair: keeps a few dozen pairs from fitting noise (bench/active.py)
    newton_steps: int = 15  # the loss is convex: a handful of steps converge
    seed: int = 0

    def __post_init__(self):
        if self.members < 2:
            raise ValueError(f"members={self.members}: an ensemble needs at least 2 members to disagree")
        if self.l2 <= 0:
            raise ValueError(f"l2={self.l2}: use a positive penalty (Newton's method needs it with few pairs)")


def features(prompt_emb: np.ndarray, answer_emb: np.ndarray) -> np.ndarray:
    """phi(p, a) = [e_a, e_p * e_a] row by row (arrays of shape (n, d) -> (n, 2d))."""
    return np.concatenate([answer_emb, prompt_emb * answer_emb], axis=1)


def fit_bt(diffs: np.ndarray, *, l2: float, steps: int = 15) -> np.ndarray:
    """w minimising mean(log(1 + exp(-diffs @ w))) + l2 |w|^2 / 2: each row of `diffs` is phi(chosen) -
    phi(rejected). Newton's method; returns zeros for no pairs."""
    n, d = diffs.shape
    w = np.zeros(d)
    if n == 0:
        return w
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(diffs @ w)))  # P(chosen beats rejected)
        grad = -(diffs.T @ (1.0 - p)) / n + l2 * w
        hess = (diffs.T * (p * (1.0 - p))) @ diffs / n + l2 * np.eye(d)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return w


def fit_ensemble(diffs: np.ndarray, groups: np.ndarray, cfg: EnsembleConfig) -> np.ndarray:
    """(members, d) weights: member m is fitted on a bootstrap resample of the prompts (`groups[i]` is the prompt
    of pair i); with one prompt or none, every member sees all pairs."""
    rng = np.random.default_rng(cfg.seed)
    prompts = np.unique(groups)
    rows_of = {g: np.flatnonzero(groups == g) for g in prompts}
    weights = []
    for _ in range(cfg.members):
        if len(prompts) > 1:
            pick = rng.choice(prompts, size=len(prompts), replace=True)
            rows = np.concatenate([rows_of[g] for g in pick])
        else:
            rows = np.arange(len(diffs))
        weights.append(fit_bt(diffs[rows], l2=cfg.l2, steps=cfg.newton_steps))
    return np.stack(weights) if weights else np.zeros((0, diffs.shape[1]))


def prompt_uncertainty(rewards: np.ndarray) -> float:
    """The score of one prompt from its answers' rewards under each member, shape (members, answers): the mean over
    answer pairs of p (1 - p) + var_m(p_m) (module docstring). 0.0 for fewer than two answers."""
    members, k = rewards.shape
    if k < 2:
        return 0.0
    i, j = np.triu_indices(k, 1)
    p_m = 1.0 / (1.0 + np.exp(-(rewards[:, i] - rewards[:, j])))  # (members, pairs)
    p = p_m.mean(axis=0)
    return float(np.mean(p * (1.0 - p) + p_m.var(axis=0)))


def novelty(prompt_embs: np.ndarray, labelled_embs: np.ndarray) -> np.ndarray:
    """1 - the largest cosine to any labelled prompt, per row of `prompt_embs` (unit vectors); 1.0 everywhere when
    nothing is labelled yet."""
    if len(labelled_embs) == 0:
        return np.ones(len(prompt_embs))
    return 1.0 - (prompt_embs @ labelled_embs.T).max(axis=1)
