"""Inter-annotator agreement on rankings, and the dataset statistics that `preflab stats` and the server show.

    from db.agreement import dataset_stats
    stats = dataset_stats(store, "oasst-demo")   # {"counts": {...}, "agreement": {...}}

Measures (numpy only; each checked against textbook values in tests/db/test_agreement.py):
- Kendall's tau-b between two rankings of the same answers (ties corrected). Between two annotators: the
  mean over the prompts both ranked. Against the consensus: each ranking vs the ranked-pairs order of its
  prompt (db.consensus), averaged per annotator.
- Kendall's W per prompt over the answers every annotator of it ranked, on mid-ranks, with the tie
  correction W = 12 S / (m^2 (n^3 - n) - m sum T), T = sum over tie groups of (t^3 - t).
- Krippendorff's alpha (ordinal) per dataset: units are answers (one prompt's generation), coders are
  rankings, values are mid-ranks within the ranking; computed from a coincidence matrix built in SQL.
Only submitted rankings of prompts with two or more of them count (one ranking agrees with nothing);
adjudications are left out because they are a reviewer's verdict on the others, not another opinion.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from itertools import combinations

import numpy as np

from db.consensus import consensus_ranks, source_values

# ---- the measures (pure functions) -------------------------------------------------------------


def midranks(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n with ties given the mean of the positions they share (fractional ranking)."""
    v = np.asarray(values, dtype=float)
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v))
    sv = v[order]
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and sv[j + 1] == sv[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of two paired samples; nan when either side is all ties (or n < 2)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) != len(y):
        raise ValueError(f"tau-b needs paired samples: got {len(x)} and {len(y)} values")
    i, j = np.triu_indices(len(x), k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    s = float(np.sum(dx * dy))
    nx, ny = float(np.count_nonzero(dx)), float(np.count_nonzero(dy))  # pairs untied in x, in y
    if nx == 0 or ny == 0:
        return math.nan
    return s / math.sqrt(nx * ny)


def kendall_w(ranks: Sequence[Sequence[float]]) -> float:
    """Kendall's W (coefficient of concordance) of m raters x n items, tie-corrected; nan if undefined."""
    r = np.asarray(ranks, dtype=float)
    if r.ndim != 2:
        raise ValueError("Kendall's W needs a raters x items matrix")
    m, n = r.shape
    if m < 2 or n < 2:
        return math.nan
    mr = np.vstack([midranks(row) for row in r])
    s = float(np.sum((mr.sum(axis=0) - m * (n + 1) / 2) ** 2))
    t = 0.0
    for row in r:
        _, counts = np.unique(row, return_counts=True)
        t += float(np.sum(counts**3 - counts))
    denom = m**2 * (n**3 - n) - m * t
    if denom <= 0:  # every rater tied every item
        return math.nan
    return 12 * s / denom


def alpha_from_coincidences(values: Sequence[float], o: np.ndarray, level: str = "ordinal") -> float:
    """Krippendorff's alpha from a coincidence matrix o over the sorted distinct `values`."""
    v = np.asarray(values, dtype=float)
    o = np.asarray(o, dtype=float)
    nc = o.sum(axis=1)
    n = nc.sum()
    if n <= 1 or len(v) < 2:
        return math.nan
    if level == "nominal":
        delta = 1.0 - np.eye(len(v))
    elif level == "interval":
        delta = (v[:, None] - v[None, :]) ** 2
    elif level == "ordinal":
        cum = np.concatenate([[0.0], np.cumsum(nc)])  # cum[k+1] - cum[c] = sum of n_g for g in c..k
        c, k = np.meshgrid(np.arange(len(v)), np.arange(len(v)), indexing="ij")
        lo, hi = np.minimum(c, k), np.maximum(c, k)
        delta = (cum[hi + 1] - cum[lo] - (nc[c] + nc[k]) / 2) ** 2
    else:
        raise ValueError(f"unknown level '{level}': use nominal, ordinal or interval")
    expected = float(np.sum(np.outer(nc, nc) * delta))
    if expected == 0:
        return math.nan
    return 1.0 - (n - 1) * float(np.sum(o * delta)) / expected


def krippendorff_alpha(data: Sequence[Sequence[float]], level: str = "ordinal") -> float:
    """Krippendorff's alpha of a coders x units reliability matrix (nan = missing)."""
    d = np.asarray(data, dtype=float)
    values = np.unique(d[~np.isnan(d)])
    index = {val: i for i, val in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for unit in d.T:
        vals = unit[~np.isnan(unit)]
        if len(vals) < 2:
            continue  # a unit coded once is not pairable
        for a, b in ((a, b) for i, a in enumerate(vals) for j, b in enumerate(vals) if i != j):
            o[index[a], index[b]] += 1 / (len(vals) - 1)
    return alpha_from_coincidences(values, o, level)


def _nanmean(xs: list[float]) -> float | None:
    xs = [x for x in xs if not math.isnan(x)]
    return sum(xs) / len(xs) if xs else None


# ---- over the database -------------------------------------------------------------------------


def _ranking_filter(dataset_id: int | None, source: str) -> tuple[str, list]:
    where = ["r.status = 'submitted'", "r.source <> 'adjudication'"]
    params: list = []
    allowed = source_values(source)
    if allowed is not None:
        where.append(f"r.source IN ({','.join('?' * len(allowed))})")
        params.extend(allowed)
    if dataset_id is not None:
        where.append("p.dataset_id = ?")
        params.append(dataset_id)
    return " AND ".join(where), params


def dataset_alpha(store, dataset_id: int | None = None, *, source: str = "all") -> float | None:
    """Krippendorff's alpha (ordinal) over every multiply-ranked answer; the coincidences are summed in SQL."""
    where, params = _ranking_filter(dataset_id, source)
    sql = f"""WITH v AS (
                SELECT i.generation_id AS unit, r.id AS coder,
                       -- mid-rank: better-ranked answers + (size of the tie group + 1) / 2
                       (rank() OVER w) + (count(*) OVER (PARTITION BY r.id, i.rank) - 1) / 2.0 AS val
                FROM rankings r JOIN prompts p ON p.id = r.prompt_id JOIN ranking_items i ON i.ranking_id = r.id
                WHERE {where}
                WINDOW w AS (PARTITION BY r.id ORDER BY i.rank)),
              m AS (SELECT unit, count(*) AS m FROM v GROUP BY unit HAVING count(*) >= 2)
              SELECT a.val AS c, b.val AS k, sum(1.0 / (m.m - 1)) AS o
              FROM v a JOIN m ON m.unit = a.unit JOIN v b ON b.unit = a.unit AND b.coder <> a.coder
              GROUP BY 1, 2"""
    with store._lock:
        rows = store.con.execute(sql, params).fetchall()
    if not rows:
        return None
    values = sorted({r[0] for r in rows} | {r[1] for r in rows})
    index = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for c, k, n in rows:
        o[index[c], index[k]] = n
    alpha = alpha_from_coincidences(values, o, "ordinal")
    return None if math.isnan(alpha) else alpha


def agreement_stats(store, dataset_id: int | None = None, *, source: str = "all") -> dict:
    """Tau-b between annotators, Kendall's W, alpha and agreement with the consensus, as one dict.

    Work is per prompt in Python over rows fetched in one query, only for prompts ranked two or more times.
    """
    where, params = _ranking_filter(dataset_id, source)
    sql = f"""WITH r AS (SELECT r.id, r.prompt_id, r.user_id FROM rankings r JOIN prompts p ON p.id = r.prompt_id
                         WHERE {where}),
              multi AS (SELECT prompt_id FROM r GROUP BY prompt_id HAVING count(*) >= 2)
              SELECT r.prompt_id, r.id, u.name, i.generation_id, i.rank
              FROM r JOIN multi USING (prompt_id) JOIN users u ON u.id = r.user_id
              JOIN ranking_items i ON i.ranking_id = r.id
              ORDER BY r.prompt_id, r.id, i.generation_id"""
    with store._lock:
        rows = store.con.execute(sql, params).fetchall()
    by_prompt: dict[int, dict[int, dict[int, int]]] = defaultdict(lambda: defaultdict(dict))
    annotator_of: dict[int, str] = {}
    for prompt_id, ranking_id, name, gen, rank in rows:
        by_prompt[prompt_id][ranking_id][gen] = rank
        annotator_of[ranking_id] = name

    ws: list[float] = []
    pair_taus: dict[tuple[str, str], list[float]] = defaultdict(list)
    vs_consensus: dict[str, list[float]] = defaultdict(list)
    for rankings in by_prompt.values():
        common = sorted(set.intersection(*(set(r) for r in rankings.values())))
        if len(common) >= 2:
            ws.append(kendall_w([[r[g] for g in common] for r in rankings.values()]))
        for (ra, a), (rb, b) in combinations(sorted(rankings.items()), 2):
            shared = sorted(set(a) & set(b))
            if len(shared) >= 2:
                key = tuple(sorted((annotator_of[ra], annotator_of[rb])))
                pair_taus[key].append(kendall_tau_b([a[g] for g in shared], [b[g] for g in shared]))
        consensus = consensus_ranks(rankings)
        for rid, ranks in rankings.items():
            gens = sorted(ranks)
            if len(gens) >= 2:
                vs_consensus[annotator_of[rid]].append(
                    kendall_tau_b([ranks[g] for g in gens], [consensus[g] for g in gens])
                )

    pairwise = []
    others: dict[str, list[float]] = defaultdict(list)
    for (a, b), taus in sorted(pair_taus.items()):
        valid = [t for t in taus if not math.isnan(t)]
        pairwise.append({"a": a, "b": b, "prompts": len(valid), "tau_b": _nanmean(taus)})
        others[a].extend(valid)
        others[b].extend(valid)
    per_annotator = [
        {
            "annotator": name,
            "prompts_with_overlap": sum(not math.isnan(t) for t in taus),
            "tau_b_vs_consensus": _nanmean(taus),
            "tau_b_vs_others": _nanmean(others.get(name, [])),
        }
        for name, taus in sorted(vs_consensus.items())
    ]
    valid_ws = [w for w in ws if not math.isnan(w)]
    bins = [min(int(w * 10), 9) for w in valid_ws]  # W is in [0, 1]; 1.0 goes to the top bin
    histogram = [{"bin": f"{i / 10:.1f}-{(i + 1) / 10:.1f}", "prompts": bins.count(i)} for i in range(10)]
    return {
        "prompts_with_overlap": len(by_prompt),
        "kendall_tau": _nanmean([t for taus in pair_taus.values() for t in taus]),
        "kendall_w": _nanmean(ws),
        "krippendorff_alpha": dataset_alpha(store, dataset_id, source=source),
        "pairwise": pairwise,
        "per_annotator": per_annotator,
        "agreement_histogram": histogram if bins else [],
    }


def aspect_alpha(store, dataset_id: int | None = None) -> dict:
    """Agreement per rated aspect: {aspect: {alpha, ratings, answers}} with Krippendorff's alpha (interval) over the
    answers rated on that aspect by two or more annotators (`answers` of them, `ratings` values in all). alpha is
    None where it cannot be computed (no such answer, or every value the same)."""
    scope = "AND r.prompt_id IN (SELECT id FROM prompts WHERE dataset_id = ?)" if dataset_id is not None else ""
    with store._lock:
        rows = store.con.execute(
            f"""SELECT t.aspect, t.generation_id, r.user_id, avg(t.value) FROM ratings t
                JOIN rankings r ON r.id = t.ranking_id
                WHERE t.value IS NOT NULL AND r.status = 'submitted' {scope}
                GROUP BY t.aspect, t.generation_id, r.user_id""",
            [dataset_id] if dataset_id is not None else [],
        ).fetchall()
    by_aspect: dict[str, dict[int, dict[int, float]]] = {}
    for aspect, gid, uid, value in rows:
        by_aspect.setdefault(aspect, {}).setdefault(gid, {})[uid] = value
    out = {}
    for aspect in sorted(by_aspect):
        units = {g: v for g, v in by_aspect[aspect].items() if len(v) >= 2}
        coders = sorted({u for v in units.values() for u in v})
        data = [[units[g].get(u, math.nan) for g in units] for u in coders]
        alpha = krippendorff_alpha(data, "interval") if units else math.nan
        out[aspect] = {
            "alpha": None if math.isnan(alpha) else alpha,
            "ratings": sum(len(v) for v in units.values()),
            "answers": len(units),
        }
    return out


def dataset_stats(store, dataset: str | None = None, *, source: str = "all") -> dict:
    """Counts and agreement for one dataset (or all): what `preflab stats` prints and GET /api/stats returns.

    {"dataset", "source", "counts": {prompts, generations, reference_answers, empty_answers (empty or
    whitespace-only text), rankings, submitted, skipped,
    flagged, pairs (non-tie), ties, annotators, examples, feedback (binary, = feedback_up + feedback_down),
    consensus_pairs, prompts_with_overlap}, "ratings_by_aspect": {aspect: ratings},
    "aspect_agreement": {aspect: {alpha (Krippendorff, interval), ratings, answers}} (see aspect_alpha),
    "agreement": {prompts_with_overlap, kendall_tau (mean tau-b over every two rankings of a prompt),
    kendall_w (mean over prompts), krippendorff_alpha (ordinal), pair_agreement (mean consensus agreement
    over pairs with two or more non-tie votes), pairwise [{a, b, prompts, tau_b}], per_annotator
    [{annotator, rankings, prompts_with_overlap, tau_b_vs_consensus, tau_b_vs_others, time_on_task_ms}],
    agreement_histogram [{bin, prompts}] of per-prompt W}}. Figures that cannot be computed are None.
    """
    from db.consensus import consensus_pairs_sql

    dataset_id = store.dataset_id(dataset) if dataset is not None else None
    scope = "WHERE dataset_id = ?" if dataset_id is not None else ""
    sp = [dataset_id] if dataset_id is not None else []
    prompts = f"SELECT id FROM prompts {scope}"
    with store._lock:
        q = store._first
        n_prompts = q(f"SELECT count(*) FROM prompts {scope}", sp)[0]
        # an empty (or whitespace-only) answer is kept as data; counted so a user sees how many there are
        gens, refs, empty = q(
            f"SELECT count(*), count(*) FILTER (WHERE kind = 'reference'), "
            f"count(*) FILTER (WHERE regexp_full_match(text, '\\s*')) FROM generations "
            f"WHERE prompt_id IN ({prompts})",
            sp,
        )
        status = dict(
            store.con.execute(
                f"SELECT status, count(*) FROM rankings WHERE prompt_id IN ({prompts}) GROUP BY status",
                sp,
            ).fetchall()
        )
        people = store.con.execute(
            f"""SELECT u.name, count(*) FILTER (WHERE r.status = 'submitted'), avg(r.time_on_task_ms)
                FROM rankings r JOIN users u ON u.id = r.user_id WHERE r.prompt_id IN ({prompts})
                GROUP BY u.name ORDER BY u.name""",
            sp,
        ).fetchall()
        pairs, ties = q(
            f"SELECT count(*) FILTER (WHERE NOT is_tie), count(*) FILTER (WHERE is_tie) FROM pairs "
            f"WHERE prompt_id IN ({prompts})",
            sp,
        )
        examples = q(f"SELECT count(*) FROM examples {scope}", sp)[0]
        up, down = q(
            f"SELECT count(*) FILTER (WHERE label), count(*) FILTER (WHERE NOT label) FROM feedback "
            f"WHERE prompt_id IN ({prompts})",
            sp,
        )
        by_aspect = store.con.execute(
            f"""SELECT t.aspect, count(*) FROM ratings t JOIN rankings r ON r.id = t.ranking_id
                WHERE r.prompt_id IN ({prompts}) GROUP BY t.aspect ORDER BY t.aspect""",
            sp,
        ).fetchall()
        csql, cparams = consensus_pairs_sql(dataset_id=dataset_id, source=source)
        n_cons, mean_agree = q(
            f"SELECT count(*), avg(agreement) FILTER (WHERE votes_chosen + votes_rejected >= 2) FROM ({csql})", cparams
        )
    agreement = agreement_stats(store, dataset_id, source=source)
    agreement["pair_agreement"] = mean_agree
    overlap = {a["annotator"]: a for a in agreement["per_annotator"]}
    agreement["per_annotator"] = [
        {
            "annotator": name,
            "rankings": n,
            "prompts_with_overlap": overlap.get(name, {}).get("prompts_with_overlap", 0),
            "tau_b_vs_consensus": overlap.get(name, {}).get("tau_b_vs_consensus"),
            "tau_b_vs_others": overlap.get(name, {}).get("tau_b_vs_others"),
            "time_on_task_ms": None if t is None else float(t),
        }
        for name, n, t in people
    ]
    return {
        "dataset": dataset,
        "source": source,
        "counts": {
            "prompts": n_prompts,
            "generations": gens,
            "reference_answers": refs,
            "empty_answers": empty,
            "rankings": sum(status.values()),
            **{s: status.get(s, 0) for s in ("submitted", "skipped", "flagged")},
            "pairs": pairs,
            "ties": ties,
            "annotators": len(people),
            "examples": examples,
            "feedback": up + down,
            "feedback_up": up,
            "feedback_down": down,
            "consensus_pairs": n_cons,
            "prompts_with_overlap": agreement["prompts_with_overlap"],
        },
        "ratings_by_aspect": dict(by_aspect),
        "aspect_agreement": aspect_alpha(store, dataset_id),
        "agreement": agreement,
    }
