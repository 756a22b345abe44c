"""Style-controlled arena ratings: Bradley-Terry with answer-style covariates, as Chatbot Arena's style control does.

    sc = style_controlled(models, a, b, s, texts_a, texts_b)   # {"rows": [...], "coefficients": {...}}

People (and judges) prefer longer and more formatted answers whatever the model; a raw rating rewards that. Here
the outcome of a vote is modelled as

    logit P(a beats b) = theta[a] - theta[b] + sum_f beta_f * z_f

where z_f is the standardised style difference of the two answers for feature f: (x_a - x_b) / (x_a + x_b)
(0 when both are 0) for length in characters, markdown headers, list items and bold spans. theta is the rating
with style held equal; beta says how much each feature sways votes (beta > 0: more of it wins). A tie counts as
half a win for each side (a soft label). The fit is Newton's method on the L2-penalised likelihood; the interval
is a percentile bootstrap over votes. Ratings are on the Elo scale of serving.arena.ratings (mean 1000).
"""

from __future__ import annotations

import re

import numpy as np

from serving.arena.ratings import BASE, SCALE

FEATURES = ("length", "headers", "lists", "bold")
_HEADERS = re.compile(r"^#{1,6}\s", re.M)
_LISTS = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s", re.M)
_BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")


def style_counts(text: str) -> tuple[float, float, float, float]:
    """(characters, headers, list items, bold spans) of an answer."""
    return float(len(text)), len(_HEADERS.findall(text)), len(_LISTS.findall(text)), len(_BOLD.findall(text))


def style_matrix(texts_a: list[str], texts_b: list[str]) -> np.ndarray:
    """(n, 4) normalised differences (x_a - x_b) / (x_a + x_b), 0 where both are 0."""
    xa = np.array([style_counts(t) for t in texts_a], dtype=float).reshape(-1, len(FEATURES))
    xb = np.array([style_counts(t) for t in texts_b], dtype=float).reshape(-1, len(FEATURES))
    total = xa + xb
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (xa - xb) / np.where(total > 0, total, 1), 0.0)


def _fit(
    design: np.ndarray,
    s: np.ndarray,
    weight: np.ndarray,
    prior: float,
    start: np.ndarray | None = None,
    tol: float = 1e-8,
    iters: int = 50,
) -> np.ndarray:
    """Newton's method for the L2-penalised logistic likelihood with soft labels s and per-row weights."""
    beta = np.zeros(design.shape[1]) if start is None else start.copy()
    eye = np.eye(design.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(design @ beta)))
        grad = design.T @ (weight * (s - p)) - prior * beta
        hess = -(design.T * (weight * p * (1 - p))) @ design - prior * eye
        step = np.linalg.solve(hess, -grad)
        beta += np.clip(step, -2.0, 2.0)
        if np.abs(step).max() < tol:
            break
    return beta


def style_controlled(
    models: list[str],
    a: np.ndarray,
    b: np.ndarray,
    s: np.ndarray,
    texts_a: list[str],
    texts_b: list[str],
    *,
    bootstrap_rounds: int = 200,
    ci: float = 0.95,
    prior: float = 0.01,
    seed: int = 0,
    samples: bool = False,
) -> dict:
    """Ratings with style held equal, their bootstrap interval, and the style coefficients (per standard
    deviation of each feature's difference). {"rows": [{model, rating, ci_low, ci_high, rank}], "coefficients":
    {feature: beta}, "features": FEATURES}; with `samples`, also "samples": {model: [bootstrap ratings]} (the same
    rounds for every model, so differences between models can be read off round by round)."""
    k, n = len(models), len(a)
    if k == 0 or n == 0:
        return {"rows": [], "coefficients": {}, "features": list(FEATURES)}
    z = style_matrix(texts_a, texts_b)
    sd = z.std(axis=0)
    z = np.where(sd > 0, z / np.where(sd > 0, sd, 1), 0.0)
    design = np.zeros((n, k + len(FEATURES)))
    design[np.arange(n), a] += 1.0
    design[np.arange(n), b] -= 1.0
    design[:, k:] = z
    coef = _fit(design, s, np.ones(n), prior)
    theta = coef[:k] - coef[:k].mean()
    low = high = boot_ratings = None
    if bootstrap_rounds:
        rng = np.random.default_rng(seed)
        boot = np.empty((bootstrap_rounds, k))
        for r in range(bootstrap_rounds):
            w = rng.multinomial(n, np.full(n, 1.0 / n)).astype(float)  # resampled votes as row weights
            c = _fit(design, s, w, prior, start=coef, tol=1e-5)[:k]  # warm start: 2-3 steps
            boot[r] = c - c.mean()
        tail = (1.0 - ci) / 2.0 * 100.0
        boot_ratings = BASE + SCALE * boot
        low, high = np.percentile(boot_ratings, [tail, 100.0 - tail], axis=0)
    rating = BASE + SCALE * theta
    rows = [
        {
            "model": m,
            "rating": round(float(rating[i]), 2),
            "ci_low": None if low is None else round(float(low[i]), 2),
            "ci_high": None if high is None else round(float(high[i]), 2),
        }
        for i, m in enumerate(models)
    ]
    rows.sort(key=lambda r: -r["rating"])
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    out = {
        "rows": rows,
        "coefficients": {f: round(float(c), 4) for f, c in zip(FEATURES, coef[k:], strict=True)},
        "features": list(FEATURES),
    }
    if samples and boot_ratings is not None:
        out["samples"] = {m: boot_ratings[:, i].tolist() for i, m in enumerate(models)}
    return out


def controlled_win_rate(sc: dict, model: str, other: str, *, ci: float = 0.95) -> dict:
    """P(`model` beats `other` with style held equal), from style_controlled's ratings, and its bootstrap interval
    (needs samples=True for the interval). {"win_rate", "ci_low", "ci_high"}."""
    rating = {r["model"]: r["rating"] for r in sc["rows"]}
    if model not in rating or other not in rating:
        return {"win_rate": None, "ci_low": None, "ci_high": None}

    def p(diff):
        return 1.0 / (1.0 + 10 ** (-np.asarray(diff) / 400.0))

    out = {"win_rate": round(float(p(rating[model] - rating[other])), 4), "ci_low": None, "ci_high": None}
    if sc.get("samples"):
        diffs = np.asarray(sc["samples"][model]) - np.asarray(sc["samples"][other])
        tail = (1.0 - ci) / 2.0 * 100.0
        lo, hi = np.percentile(p(diffs), [tail, 100.0 - tail])
        out.update(ci_low=round(float(lo), 4), ci_high=round(float(hi), 4))
    return out
