"""Arena ratings: Bradley-Terry maximum likelihood with bootstrap intervals, online Elo, win rates.

    board = compute_leaderboard(votes)          # votes: [{"model_a", "model_b", "winner": a|b|tie|both_bad}]
    board.rows[0]  # {"model", "rating", "ci_low", "ci_high", "votes", "wins", "losses", "ties", "elo", "rank"}

A tie (and "both bad") counts as half a win for each side. Ratings are on the Elo scale: 400 points =
10:1 odds, centred so the mean log-strength maps to 1000. The fit is a batched Newton solve of the
penalised logistic likelihood; the bootstrap resamples *vote counts* per (a, b, outcome) cell with one
multinomial draw per round (identical in law to resampling votes) and fits all rounds at once, warm-started
from the full-data fit — 1,000 rounds on 100k votes take well under a second (bench/arena.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SCALE = 400.0 / math.log(10.0)  # log-odds -> Elo points
BASE = 1000.0
OUTCOME = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}


@dataclass(kw_only=True)
class RatingsConfig:
    bootstrap_rounds: int = 1000
    ci: float = 0.95
    prior: float = 0.01  # L2 pull of log-strengths to 0: keeps a model that never won finite, negligible otherwise
    elo_k: float = 16.0  # online Elo step; 4 (LMSYS) suits millions of votes, 16-32 a few hundred
    seed: int = 0
    max_iter: int = 100
    tol: float = 1e-8

    def __post_init__(self):
        if self.bootstrap_rounds < 0:
            raise ValueError("bootstrap_rounds must be >= 0 (0 skips the intervals)")
        if not 0.0 < self.ci < 1.0:
            raise ValueError(f"ci must be in (0, 1), e.g. 0.95; got {self.ci}")
        if self.prior <= 0:
            raise ValueError("prior must be > 0 (e.g. 0.01): without it a model with no wins has rating -inf")


@dataclass
class Leaderboard:
    models: list[str]
    rows: list[dict]  # sorted by rating, best first
    winrate: list[list[float | None]]  # [i][j]: share of i's games against j that i won (ties half); None: no games
    games: list[list[int]]  # [i][j]: votes between i and j
    n_votes: int
    config: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "models": self.models,
            "rows": self.rows,
            "winrate": self.winrate,
            "games": self.games,
            "n_votes": self.n_votes,
            "config": self.config,
        }


def encode_votes(votes: list[dict]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(model names, index of a, index of b, score of a in {1, 0.5, 0}) from vote dicts."""
    models = sorted({v["model_a"] for v in votes} | {v["model_b"] for v in votes})
    index = {m: i for i, m in enumerate(models)}
    a = np.fromiter((index[v["model_a"]] for v in votes), dtype=np.int64, count=len(votes))
    b = np.fromiter((index[v["model_b"]] for v in votes), dtype=np.int64, count=len(votes))
    s = np.fromiter((OUTCOME[v["winner"]] for v in votes), dtype=np.float64, count=len(votes))
    return models, a, b, s


def _cells(k: int, a: np.ndarray, b: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Collapse votes to counts per (a, b, outcome) cell: (cell ids, counts). Cell = (a*k + b)*3 + outcome."""
    outcome = np.rint(s * 2).astype(np.int64)  # 0, 1, 2 = b wins, tie, a wins
    cell = (a * k + b) * 3 + outcome
    ids, counts = np.unique(cell, return_counts=True)
    return ids, counts


def _wins_games(k: int, ids: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched win and game matrices from cell counts of shape (B, C): W[b, i, j] = i's score against j."""
    counts = np.atleast_2d(counts).astype(np.float64)
    pair, outcome = ids // 3, ids % 3
    i, j = pair // k, pair % k
    score = outcome / 2.0
    n_rounds = counts.shape[0]
    w = np.zeros((n_rounds, k * k))
    g = np.zeros((n_rounds, k * k))
    # one matrix product per target instead of a Python loop over rounds
    onehot_ij = np.zeros((len(ids), k * k))
    onehot_ij[np.arange(len(ids)), i * k + j] = 1.0
    onehot_ji = np.zeros((len(ids), k * k))
    onehot_ji[np.arange(len(ids)), j * k + i] = 1.0
    w += (counts * score) @ onehot_ij + (counts * (1.0 - score)) @ onehot_ji
    g += counts @ onehot_ij + counts @ onehot_ji
    return w.reshape(n_rounds, k, k), g.reshape(n_rounds, k, k)


def fit_bradley_terry(
    wins: np.ndarray,
    games: np.ndarray,
    *,
    prior: float = 0.01,
    theta0: np.ndarray | None = None,
    max_iter: int = 100,
    tol: float = 1e-8,
) -> np.ndarray:
    """Log-strengths maximising the penalised BT likelihood, for a batch of (K, K) win/game matrices.

    Newton's method on sum_ij W_ij log sigmoid(t_i - t_j) - prior/2 |t|^2, batched over the leading axis
    (the likelihood is concave, the prior makes it strictly so; steps are clipped for the first iterations
    when starting far away). Returns log-strengths of shape (B, K), centred to mean 0.
    """
    if wins.ndim == 2:
        wins, games = wins[None], games[None]
    n_rounds, k, _ = wins.shape
    theta = np.zeros((n_rounds, k)) if theta0 is None else np.broadcast_to(theta0, (n_rounds, k)).copy()
    score = wins.sum(axis=2)  # total score of each model
    eye = np.eye(k)
    for _ in range(max_iter):
        diff = theta[:, :, None] - theta[:, None, :]
        p = 1.0 / (1.0 + np.exp(-diff))
        grad = score - (games * p).sum(axis=2) - prior * theta
        w = games * p * (1.0 - p)
        hess = w - eye * (w.sum(axis=2)[:, :, None] + prior)  # negative definite
        step = np.linalg.solve(hess, -grad[:, :, None])[:, :, 0]
        step = np.clip(step, -2.0, 2.0)
        theta += step
        if np.abs(step).max() < tol:
            break
    return theta - theta.mean(axis=1, keepdims=True)


def online_elo(k_models: int, a: np.ndarray, b: np.ndarray, s: np.ndarray, *, k: float = 16.0) -> np.ndarray:
    """Sequential Elo over votes in the order given (depends on order, unlike BT: shown for comparison)."""
    r = np.full(k_models, BASE)
    for ia, ib, sa in zip(a.tolist(), b.tolist(), s.tolist(), strict=True):
        ea = 1.0 / (1.0 + 10 ** ((r[ib] - r[ia]) / 400.0))
        r[ia] += k * (sa - ea)
        r[ib] -= k * (sa - ea)
    return r


def compute_leaderboard(votes: list[dict], config: RatingsConfig | None = None) -> Leaderboard:
    """Ratings, bootstrap intervals, Elo, counts and the win-rate matrix from vote dicts."""
    models, a, b, s = encode_votes(votes)
    return leaderboard_from_arrays(models, a, b, s, config)


def leaderboard_from_arrays(
    models: list[str], a: np.ndarray, b: np.ndarray, s: np.ndarray, config: RatingsConfig | None = None
) -> Leaderboard:
    cfg = config or RatingsConfig()
    k = len(models)
    if k == 0:
        return Leaderboard(models=[], rows=[], winrate=[], games=[], n_votes=0, config=cfg.__dict__)
    ids, counts = _cells(k, a, b, s)
    wins, games = _wins_games(k, ids, counts)
    theta = fit_bradley_terry(wins, games, prior=cfg.prior, max_iter=cfg.max_iter, tol=cfg.tol)[0]
    rating = BASE + SCALE * theta
    low = high = None
    if cfg.bootstrap_rounds and len(a):
        rng = np.random.default_rng(cfg.seed)
        boot_counts = rng.multinomial(int(counts.sum()), counts / counts.sum(), size=cfg.bootstrap_rounds)
        bw, bg = _wins_games(k, ids, boot_counts)
        boot = BASE + SCALE * fit_bradley_terry(bw, bg, prior=cfg.prior, theta0=theta, max_iter=cfg.max_iter, tol=1e-6)
        tail = (1.0 - cfg.ci) / 2.0 * 100.0
        low, high = np.percentile(boot, [tail, 100.0 - tail], axis=0)
    elo = online_elo(k, a, b, s, k=cfg.elo_k)
    w, g = wins[0], games[0]
    votes_per = g.sum(axis=1)
    wins_per = np.zeros(k)
    losses_per = np.zeros(k)
    ties_per = np.zeros(k)
    np.add.at(wins_per, a[s == 1.0], 1)
    np.add.at(wins_per, b[s == 0.0], 1)
    np.add.at(losses_per, a[s == 0.0], 1)
    np.add.at(losses_per, b[s == 1.0], 1)
    np.add.at(ties_per, a[s == 0.5], 1)
    np.add.at(ties_per, b[s == 0.5], 1)
    rows = []
    for i, m in enumerate(models):
        rows.append(
            {
                "model": m,
                "rating": round(float(rating[i]), 2),
                "ci_low": None if low is None else round(float(low[i]), 2),
                "ci_high": None if high is None else round(float(high[i]), 2),
                "votes": int(votes_per[i]),
                "wins": int(wins_per[i]),
                "losses": int(losses_per[i]),
                "ties": int(ties_per[i]),
                "elo": round(float(elo[i]), 2),
            }
        )
    rows.sort(key=lambda r: -r["rating"])
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(g > 0, w / np.where(g > 0, g, 1), np.nan)
    winrate = [[None if np.isnan(x) else round(float(x), 4) for x in row] for row in rate]
    return Leaderboard(
        models=models,
        rows=rows,
        winrate=winrate,
        games=g.astype(int).tolist(),
        n_votes=len(a),
        config=dict(cfg.__dict__),
    )
