"""Annotator quality: which labels to trust, measured per annotator, and a consensus that uses it.

    from db.quality import annotator_quality, reliability
    rows = annotator_quality(store, dataset_id)      # one dict per annotator, worst quality first
    fit = reliability(votes)                          # Dawid-Skene over pairwise votes: skills and pair posteriors

Per annotator, over their submitted rankings (adjudications are a reviewer's verdict, not an opinion, and are left
out; gold prompts count for gold accuracy only):
- `pair_agreement`: leave-one-out agreement. Of the annotator's non-tie votes on pairs where the OTHER annotators'
  non-tie votes have a strict majority, the share that go the majority's way (`pairs_compared` of them).
- `tau_b`: mean Kendall tau-b between the annotator's ranking and the ranked-pairs consensus of the other
  rankings of the same prompt (db.consensus), over prompts with at least one other ranking.
- `gold_accuracy`: of the annotator's votes on gold pairs (two answers the known order separates), the share that
  agree with it; a tie counts half (a coin flip would get as much). `gold_pairs`, `gold_items`: how many.
- `reliability`: the annotator's accuracy under a Dawid-Skene model fitted on every pairwise vote of the scope
  (crowd-kit's DawidSkene; a pair of answers is a task with two classes, each annotator has a 2x2 confusion
  matrix, gold pairs enter as known labels). The mean of the confusion matrix's diagonal: 1.0 never wrong, 0.5 a
  coin. Unlike agreement it needs no overlap with any one other annotator and it discounts the careless.
- `quality`: the number to sort and filter by: `reliability`, or `pair_agreement` when the model could not be fitted
  (no pair was voted on twice), else None.
- `median_seconds` per item and `too_fast`: the share of rankings faster than `too_fast_s` (default: a quarter of
  the scope's median seconds per item, at least one second).
- `first_best` (how often the answer shown first was ranked best, alone or tied) against `first_best_chance` (what
  position-blind ranking would give: the mean share of answers at rank 1), and `position_bias` = their ratio.
- `tie_rate` (share of pair votes that are ties) and `all_bad_rate` (share of rankings marked "all bad").
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from db.agreement import kendall_tau_b
from db.consensus import consensus_ranks, submitted_sql
from db.errors import InputError, NotFoundError
from db.reliability import HI, LO, reliability

log = logging.getLogger(__name__)


def _scope(dataset_id: int | None, source: str) -> tuple[str, list]:
    """Submitted rankings of `source` in the dataset, adjudications left out (a verdict, not an opinion)."""
    where, params = submitted_sql(dataset_id=dataset_id, source=source)
    return " AND ".join([*where, "r.source <> 'adjudication'"]), params


def _fetch(store, dataset_id: int | None, source: str):
    where, params = _scope(dataset_id, source)
    with store._lock:
        items = store.con.execute(
            f"""SELECT r.id, r.prompt_id, u.name, r.all_bad, r.time_on_task_ms, i.generation_id, i.rank, i.position,
                       gi.prompt_id IS NOT NULL AS gold
                FROM rankings r JOIN users u ON u.id = r.user_id JOIN ranking_items i ON i.ranking_id = r.id
                LEFT JOIN gold_items gi ON gi.prompt_id = r.prompt_id
                WHERE {where} ORDER BY r.id, i.generation_id""",
            params,
        ).fetchall()
        gold = store.con.execute(
            "SELECT prompt_id, generation_id, rank FROM gold_answers"
            + ("" if dataset_id is None else " WHERE prompt_id IN (SELECT id FROM prompts WHERE dataset_id = ?)"),
            [] if dataset_id is None else [dataset_id],
        ).fetchall()
    return items, gold


@dataclass
class Votes:
    """The scope's rankings and the pairwise votes they cast, with the gold labels."""

    rankings: dict[int, dict]  # ranking id -> {prompt, annotator, all_bad, ms, ranks {gen: rank}, pos {place: gen}}
    votes: dict[tuple[int, int, int], list[tuple[str, int]]]  # (prompt, lo, hi) -> [(annotator, dir)]
    gold: dict[tuple[int, int, int], str]  # (prompt, lo, hi) -> "lo" | "hi" for pairs a gold order separates

    def labels(self) -> list[tuple[tuple[int, int, int], str, str]]:
        """The non-tie votes as Dawid-Skene labels."""
        return [(t, w, LO if d == 1 else HI) for t, vs in self.votes.items() for w, d in vs if d != 0]


def collect_votes(store, dataset_id: int | None = None, *, source: str = "human") -> Votes:
    """Every submitted ranking of the scope, and the vote it casts on each pair of its answers (dir 1: the answer
    with the lower generation id preferred, -1: the other, 0: a tie)."""
    items, gold_rows = _fetch(store, dataset_id, source)
    rankings: dict[int, dict] = {}
    for rid, prompt, name, all_bad, ms, gen, rank, position, is_gold in items:
        r = rankings.setdefault(
            rid, {"prompt": prompt, "annotator": name, "all_bad": all_bad, "ms": ms, "ranks": {}, "pos": {}}
        )
        r["ranks"][gen] = rank
        r["gold"] = is_gold
        if position is not None:
            r["pos"][position] = gen
    votes: dict[tuple[int, int, int], list[tuple[str, int]]] = defaultdict(list)
    for r in rankings.values():
        gens = sorted(r["ranks"])
        for i, a in enumerate(gens):
            for b in gens[i + 1 :]:
                ra, rb = r["ranks"][a], r["ranks"][b]
                votes[(r["prompt"], a, b)].append((r["annotator"], 1 if ra < rb else -1 if rb < ra else 0))
    gold: dict[int, dict[int, int]] = defaultdict(dict)
    for prompt, gen, rank in gold_rows:
        gold[prompt][gen] = rank
    labels = {}
    for prompt, ranks in gold.items():
        gens = sorted(ranks)
        for i, a in enumerate(gens):
            for b in gens[i + 1 :]:
                if ranks[a] != ranks[b]:
                    labels[(prompt, a, b)] = LO if ranks[a] < ranks[b] else HI
    return Votes(rankings=rankings, votes=votes, gold=labels)


def annotator_quality(
    store, dataset_id: int | None = None, *, source: str = "human", too_fast_s: float | None = None
) -> list[dict]:
    """The measures of the module docstring, one dict per annotator, lowest `quality` first (None last)."""
    v = collect_votes(store, dataset_id, source=source)
    rankings, votes, gold_labels = v.rankings, v.votes, v.gold
    fit = reliability(v.labels(), gold_labels)
    by_prompt: dict[int, dict[int, dict[int, int]]] = defaultdict(dict)
    for rid, r in rankings.items():
        if not r["gold"]:
            by_prompt[r["prompt"]][rid] = r["ranks"]

    stats: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    taus: dict[str, list[float]] = defaultdict(list)
    for task, vs in votes.items():
        total = sum(d for _, d in vs)
        for w, d in vs:
            s = stats[w]
            s["pairs"] += 1
            s["ties"] += d == 0
            if task in gold_labels:
                s["gold_pairs"] += 1
                want = 1 if gold_labels[task] == LO else -1
                s["gold_right"] += 1.0 if d == want else 0.5 if d == 0 else 0.0
            elif d != 0 and total - d != 0:
                s["compared"] += 1
                s["agreed"] += (total - d > 0) == (d > 0)
    for rankings_of in by_prompt.values():
        if len(rankings_of) < 2:
            continue
        for rid, ranks in rankings_of.items():
            others = consensus_ranks({o: rr for o, rr in rankings_of.items() if o != rid})
            gens = sorted(set(ranks) & set(others))
            if len(gens) >= 2:
                t = kendall_tau_b([ranks[g] for g in gens], [others[g] for g in gens])
                if not math.isnan(t):
                    taus[rankings[rid]["annotator"]].append(t)

    seconds = [r["ms"] / 1000 for r in rankings.values() if r["ms"] is not None]
    limit = too_fast_s if too_fast_s is not None else max(1.0, float(np.median(seconds)) / 4 if seconds else 1.0)
    per: dict[str, list[dict]] = defaultdict(list)
    for r in rankings.values():
        per[r["annotator"]].append(r)
    out = []
    for name, rs in per.items():
        s = stats[name]
        secs = [r["ms"] / 1000 for r in rs if r["ms"] is not None]
        shown = [r for r in rs if 0 in r["pos"]]
        first_best = [r["ranks"][r["pos"][0]] == min(r["ranks"].values()) for r in shown]
        chance = [sum(v == min(r["ranks"].values()) for v in r["ranks"].values()) / len(r["ranks"]) for r in shown]
        agreement = s["agreed"] / s["compared"] if s["compared"] else None
        skill = fit.skills.get(name)
        skill = None if skill is None or math.isnan(skill) else skill
        fb, fc = (float(np.mean(first_best)), float(np.mean(chance))) if shown else (None, None)
        out.append(
            {
                "annotator": name,
                "rankings": len(rs),
                "pairs": int(s["pairs"]),
                "pair_agreement": agreement,
                "pairs_compared": int(s["compared"]),
                "tau_b": float(np.mean(taus[name])) if taus.get(name) else None,
                "gold_accuracy": s["gold_right"] / s["gold_pairs"] if s["gold_pairs"] else None,
                "gold_pairs": int(s["gold_pairs"]),
                "gold_items": sum(bool(r["gold"]) for r in rs),
                "reliability": skill,
                "quality": skill if skill is not None else agreement,
                "median_seconds": float(np.median(secs)) if secs else None,
                "too_fast": sum(x < limit for x in secs) / len(secs) if secs else None,
                "first_best": fb,
                "first_best_chance": fc,
                "position_bias": fb / fc if fb is not None and fc else None,
                "tie_rate": s["ties"] / s["pairs"] if s["pairs"] else None,
                "all_bad_rate": sum(bool(r["all_bad"]) for r in rs) / len(rs),
            }
        )
    out.sort(key=lambda row: (row["quality"] is None, row["quality"] if row["quality"] is not None else 0))
    return out


def gold_flags(store, dataset_id: int | None = None, *, first: int = 100, below: float = 0.7, min_items: int = 3):
    """Annotators whose gold accuracy over the gold items among their first `first` items (in the order they
    made them) is below `below`, once they have answered at least `min_items` gold items there.

    Returns {annotator: {"items": n, "gold_items": g, "gold_accuracy": a, "flagged": bool}} for every annotator
    with at least one gold item among their first items. Accuracy is per gold pair, a tie counting half.
    """
    where, params = _scope(dataset_id, "all")
    rows = store.query(
        f"""WITH r AS (SELECT r.id, r.prompt_id, u.name,
                              row_number() OVER (PARTITION BY r.user_id ORDER BY r.created_at, r.id) AS n
                       FROM rankings r JOIN users u ON u.id = r.user_id WHERE {where}),
                 mine AS (SELECT * FROM r WHERE n <= ?)
            SELECT m.name AS annotator, (SELECT count(*) FROM mine x WHERE x.name = m.name) AS items,
                   count(DISTINCT m.id) AS gold_items,
                   avg(CASE WHEN sign(ia.rank - ib.rank) = sign(ga.rank - gb.rank) THEN 1.0
                            WHEN ia.rank = ib.rank THEN 0.5 ELSE 0.0 END) AS gold_accuracy
            FROM mine m JOIN gold_items gi ON gi.prompt_id = m.prompt_id
            JOIN ranking_items ia ON ia.ranking_id = m.id JOIN ranking_items ib ON ib.ranking_id = m.id
                 AND ia.generation_id < ib.generation_id
            JOIN gold_answers ga ON ga.prompt_id = m.prompt_id AND ga.generation_id = ia.generation_id
            JOIN gold_answers gb ON gb.prompt_id = m.prompt_id AND gb.generation_id = ib.generation_id
            WHERE ga.rank <> gb.rank
            GROUP BY m.name""",
        [*params, first],
    )
    return {
        r["annotator"]: {
            "items": r["items"],
            "gold_items": r["gold_items"],
            "gold_accuracy": r["gold_accuracy"],
            "flagged": r["gold_items"] >= min_items and r["gold_accuracy"] < below,
        }
        for r in rows
    }


def set_control(
    store, dataset_id: int, user: str, *, paused: bool | None = None, weight: float | None = None, by: str
) -> dict:
    """Pause or resume an annotator in a dataset, or set the weight of their votes (0 excludes them from weighted
    consensus and quality-filtered exports, 1 counts them fully). Returns {annotator, paused, weight}."""
    if weight is not None and not 0 <= weight <= 1:
        raise InputError("weight is from 0 (exclude) to 1 (full weight)", field="weight")
    with store.transaction() as c:
        row = c.execute("SELECT id FROM users WHERE name = ?", [user]).fetchall()
        if not row:
            raise NotFoundError(f"no user named {user!r}")
        c.execute(
            """INSERT INTO annotator_controls (dataset_id, user_id, paused, weight, updated_by) VALUES (?, ?, ?, ?, ?)
               ON CONFLICT (dataset_id, user_id) DO UPDATE SET
                   paused = coalesce(?, annotator_controls.paused), weight = coalesce(?, annotator_controls.weight),
                   updated_by = excluded.updated_by, updated_at = ?""",
            [
                dataset_id,
                row[0][0],
                bool(paused),
                1.0 if weight is None else weight,
                by,
                paused,
                weight,
                datetime.now(),
            ],
        )
    return controls(store, dataset_id)[user]


def controls(store, dataset_id: int) -> dict[str, dict]:
    """{annotator: {annotator, paused, weight}} for the annotators a reviewer has paused or weighted here."""
    rows = store.query(
        "SELECT u.name AS annotator, c.paused, c.weight FROM annotator_controls c JOIN users u ON u.id = c.user_id "
        "WHERE c.dataset_id = ?",
        [dataset_id],
    )
    return {r["annotator"]: r for r in rows}


def annotator_series(store, dataset_id: int | None = None, *, source: str = "human") -> list[dict]:
    """Per annotator and day: items ranked, median seconds per item, "all bad" and tie-free rankings, for the
    Annotators page's time series. [{annotator, day, items, median_seconds, all_bad}] in day order."""
    where, params = _scope(dataset_id, source)
    return store.query(
        f"""SELECT u.name AS annotator, CAST(date_trunc('day', r.created_at) AS DATE)::VARCHAR AS day,
                   count(*) AS items, median(r.time_on_task_ms) / 1000.0 AS median_seconds,
                   count(*) FILTER (WHERE r.all_bad) AS all_bad
            FROM rankings r JOIN users u ON u.id = r.user_id WHERE {where}
            GROUP BY ALL ORDER BY day, annotator""",
        params,
    )


def prepare_consensus(
    store, dataset_id: int | None, *, source: str = "all", min_quality: float = 0.0, weighted: bool = False
) -> bool:
    """Fill the temporary tables that quality-aware consensus reads (db.consensus, `quality` and `weighted`):
    x_excluded (user_id, dataset_id): annotators a reviewer gave weight 0, and with `min_quality` those whose
    quality in the dataset is below it; x_weighted (prompt_id, lo, hi, p_lo): with `weighted`, each pair's
    reliability-weighted posterior (db.reliability) over the votes of the annotators not excluded, weighted by
    their controls' weight. Call on the export's connection, inside its transaction. Returns whether anything
    is excluded or weighted (False: plain majority gives the same pairs and the tables are empty)."""
    c = store.con
    c.execute("CREATE OR REPLACE TEMP TABLE x_excluded (user_id INTEGER, dataset_id INTEGER)")
    c.execute("CREATE OR REPLACE TEMP TABLE x_weighted (prompt_id BIGINT, lo BIGINT, hi BIGINT, p_lo DOUBLE)")
    scope = [dataset_id] if dataset_id is not None else [r[0] for r in c.execute("SELECT id FROM datasets").fetchall()]
    rank_source = "all" if source == "all" else source
    used = False
    for ds in scope:
        weights = {n: r["weight"] for n, r in controls(store, ds).items()}
        excluded = {n for n, w in weights.items() if w == 0}
        fit, votes = None, None
        if min_quality > 0 or weighted:
            votes = collect_votes(store, ds, source=rank_source)
            fit = reliability(votes.labels(), votes.gold)
        if min_quality > 0:
            names = {r["annotator"] for r in votes.rankings.values()}
            excluded |= {
                n for n in names if (q := fit.skills.get(n)) is not None and not math.isnan(q) and q < min_quality
            }
        if excluded:
            c.execute(
                "INSERT INTO x_excluded SELECT id, ? FROM users WHERE name IN (SELECT unnest(?::VARCHAR[]))",
                [ds, sorted(excluded)],
            )
            used = True
        if weighted:
            adjudicated = {
                r[0]
                for r in c.execute(
                    "SELECT DISTINCT r.prompt_id FROM rankings r JOIN prompts p ON p.id = r.prompt_id "
                    "WHERE r.source = 'adjudication' AND r.status = 'submitted' AND p.dataset_id = ?",
                    [ds],
                ).fetchall()
            }
            rows = []
            for task, vs in votes.votes.items():
                labelled = [(w, LO if d == 1 else HI) for w, d in vs if d != 0 and w not in excluded]
                if labelled and task[0] not in adjudicated:
                    rows.append((*task, fit.posterior(labelled, weights)))
            if rows:
                cols = list(zip(*rows, strict=True))
                c.execute(
                    "INSERT INTO x_weighted SELECT unnest(?::BIGINT[]), unnest(?::BIGINT[]), unnest(?::BIGINT[]), "
                    "unnest(?::DOUBLE[])",
                    [list(cols[0]), list(cols[1]), list(cols[2]), list(cols[3])],
                )
            used = True
    return used
