"""Dawid-Skene over pairwise votes: how reliable each annotator is, and a consensus that weighs them by it.

    fit = reliability(votes, gold)                    # votes [((prompt, lo, hi), annotator, "lo" | "hi")]
    fit.skills["ana"], fit.p_lo[(prompt, lo, hi)]
    fit.posterior(votes_of_task, weights)             # P(lo preferred) with per-annotator weights

A pair of answers of one prompt is a task with two classes: the answer with the lower generation id wins ("lo")
or the other ("hi"). crowd-kit's DawidSkene fits a 2x2 confusion matrix per annotator by EM, with gold pairs as
known labels; an annotator's skill is the mean of its diagonal (1.0 never wrong, 0.5 a coin). The weighted
posterior multiplies each annotator's likelihood term by their weight (a reviewer's down-weighting; 0 removes
them): log P(c | votes) = log prior(c) + sum over votes of weight * log P(vote | c), normalised. With every weight
1 that is the model's own posterior. Ties carry no class and are left out of the fit.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

LO, HI = "lo", "hi"


@dataclass
class Reliability:
    """A Dawid-Skene fit over pairwise votes: per annotator accuracy, per pair task P(lo wins)."""

    skills: dict[str, float] = field(default_factory=dict)
    p_lo: dict[tuple[int, int, int], float] = field(default_factory=dict)  # (prompt, lo, hi) -> P(lo preferred)
    # annotator -> {(vote, true class): probability}; prior {class: probability}
    confusion: dict[str, dict[tuple[str, str], float]] = field(default_factory=dict)
    prior: dict[str, float] = field(default_factory=dict)

    def posterior(self, votes: list[tuple[str, str]], weights: dict[str, float] | None = None) -> float:
        """P(lo preferred) for one task from its votes [(annotator, "lo" | "hi")], each annotator's term scaled by
        their weight (default 1). An annotator the fit does not know counts as a coin (no evidence)."""
        weights = weights or {}
        logp = {c: math.log(max(self.prior.get(c, 0.5), 1e-12)) for c in (LO, HI)}
        for annotator, label in votes:
            w = weights.get(annotator, 1.0)
            m = self.confusion.get(annotator)
            if not w or m is None:
                continue
            for c in (LO, HI):
                logp[c] += w * math.log(max(m.get((label, c), 0.5), 1e-12))
        top = max(logp.values())
        lo, hi = math.exp(logp[LO] - top), math.exp(logp[HI] - top)
        return lo / (lo + hi)


def reliability(votes: list[tuple[tuple[int, int, int], str, str]], gold: dict | None = None) -> Reliability:
    """Fit Dawid-Skene on `votes` [((prompt, lo, hi), annotator, "lo" | "hi")] (ties left out: they carry no class).

    `gold` {(prompt, lo, hi): "lo" | "hi"} are known labels. Returns empty skills when no task has two votes.
    """
    if not votes:
        return Reliability()
    import pandas as pd
    from crowdkit.aggregation import DawidSkene  # imported here: it pulls in scikit-learn

    tasks = {t for t, _, _ in votes}
    index = {t: f"{t[0]}:{t[1]}:{t[2]}" for t in tasks}
    df = pd.DataFrame({"task": [index[t] for t, _, _ in votes], "worker": [w for _, w, _ in votes]})
    df["label"] = [lab for _, _, lab in votes]
    if df.groupby("task").size().max() < 2 and not gold:
        return Reliability()
    true_labels = None
    if gold:
        known = {index[t]: lab for t, lab in gold.items() if t in index}
        true_labels = pd.Series(known, dtype=object) if known else None
    with warnings.catch_warnings():  # crowd-kit 1.4 trips pandas deprecation warnings; the results are unaffected
        warnings.simplefilter("ignore")
        ds = DawidSkene(n_iter=100, tol=1e-6).fit(df, true_labels=true_labels)
        errors = ds.errors_
        probas = ds.probas_
        priors = ds.priors_
    skills, confusion = {}, {}
    for worker in df["worker"].unique():
        m = errors.loc[worker]
        diag = [float(m.loc[c, c]) for c in (LO, HI) if c in m.index and c in m.columns]
        skills[worker] = sum(diag) / len(diag) if diag else math.nan
        confusion[worker] = {(v, c): float(m.loc[v, c]) for v in m.index for c in m.columns}
    back = {v: k for k, v in index.items()}
    p_lo = {back[t]: float(row.get(LO, 0.0)) for t, row in probas.iterrows()}
    prior = {c: float(priors.get(c, 0.5)) for c in (LO, HI)}
    return Reliability(skills=skills, p_lo=p_lo, confusion=confusion, prior=prior)


def pair_accuracy(votes: dict, truth: dict, fit: Reliability) -> dict[str, float]:
    """How often majority and reliability-weighted consensus recover the true direction of a pair.

    `votes` {(prompt, lo, hi): [dir, ...]} (1: lo preferred, -1: hi, 0: tie), `truth` {(prompt, lo, hi): 1 | -1}.
    A pair the method cannot decide (an even vote; a posterior of exactly 0.5) scores half. Pairs without a
    truth are left out."""
    maj = wtd = n = 0.0
    for task, dirs in votes.items():
        if task not in truth:
            continue
        n += 1
        s = sum(dirs)
        maj += 0.5 if s == 0 else float((s > 0) == (truth[task] > 0))
        p = fit.p_lo.get(task, 0.5)
        wtd += 0.5 if p == 0.5 else float((p > 0.5) == (truth[task] > 0))
    return {"pairs": int(n), "majority": maj / n if n else math.nan, "weighted": wtd / n if n else math.nan}
