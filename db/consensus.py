"""Consensus across the annotators of one prompt: pair-level majorities (SQL) and a ranked-pairs order (Python).

    from db.consensus import consensus_pairs_sql, consensus_order
    sql, params = consensus_pairs_sql(dataset_id=3, source="human")   # one row per answer pair, for exports
    consensus_order(store, prompt_id=42)                               # [{"generation_id", "rank", ...}]

The method, in full (docs/formats.md repeats it for users):

1. Votes. Every submitted ranking that put two answers of a prompt in order casts one vote on that pair:
   for one side, for the other, or a tie (equal ranks). Skipped and flagged rankings cast no votes. If a
   reviewer's adjudication ranking (source 'adjudication') exists for a prompt, it alone votes there.
2. Pair consensus (SQL, used by exports at any scale). The consensus direction is the majority of the non-tie
   votes; `agreement` is the share of non-tie votes that went to that majority (1.0 when everybody agrees,
   0.5 at an even split). An even split, or a pair on which every vote was a tie, is a consensus *tie*
   (is_tie; agreement 0.5 resp. 1.0). `margin` is the mean rank distance of the votes that agree with the
   consensus (0 for ties). With one annotator the consensus is just that annotator's pairs (agreement 1.0).
   Exports keep pairs with at least N votes (--min-annotators, ties counted as votes: they are judgments)
   and agreement >= X (--min-agreement).
3. Prompt order (Python, per prompt: stats, review, agreement with the consensus): ranked pairs (Tideman).
   Majorities are sorted strongest first (more winning votes, then a larger winning margin, then fewer
   losing votes; generation ids break the remaining ties so the result is deterministic) and locked in
   that order unless one would close a cycle with those already locked. An answer's consensus rank is 1 +
   the length of the longest locked chain above it, so answers with no locked path between them (ties)
   share a rank.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

# --source: which rankings may vote. 'human' is people: rankings made in the UI, imported ones, imported
# consensus rankings (oasst) and reviewers' adjudications. Arena votes arrive as two-answer rankings.
SOURCES: dict[str, tuple[str, ...] | None] = {
    "human": ("human", "import", "consensus", "adjudication"),
    "arena": ("arena",),
    "all": None,
}


def source_values(source: str) -> tuple[str, ...] | None:
    """The ranking sources a --source choice admits (None: all of them)."""
    if source not in SOURCES:
        raise ValueError(f"unknown source '{source}': use one of {', '.join(SOURCES)}")
    return SOURCES[source]


def submitted_sql(*, dataset_id: int | None = None, source: str = "all") -> tuple[list[str], list]:
    """The conditions over `rankings r` for submitted rankings of `source` in the dataset (all datasets: None),
    and their params: what every reading of the rankings starts from."""
    where, params = ["r.status = 'submitted'"], []
    allowed = source_values(source)
    if allowed is not None:
        where.append(f"r.source IN ({','.join('?' * len(allowed))})")
        params.extend(allowed)
    if dataset_id is not None:
        where.append("r.prompt_id IN (SELECT id FROM prompts WHERE dataset_id = ?)")
        params.append(dataset_id)
    return where, params


def voters_sql(*, dataset_id: int | None = None, source: str = "all", quality: bool = False) -> tuple[str, list]:
    """WHERE clause over `rankings r` selecting the rankings that vote (step 1 of the method), and its params.

    `quality`: also leave out the rankings of the annotators listed for their prompt's dataset in the temporary
    table x_excluded (user_id, dataset_id), which db.quality.prepare_consensus fills (too low a quality, or a
    reviewer's weight 0)."""
    where, params = submitted_sql(dataset_id=dataset_id, source=source)
    if quality:
        where.append(
            "NOT EXISTS (SELECT 1 FROM x_excluded x JOIN prompts xp ON xp.dataset_id = x.dataset_id "
            "WHERE x.user_id = r.user_id AND xp.id = r.prompt_id)"
        )
    # A gold prompt's rankings check the annotators; they are never training data.
    where.append("r.prompt_id NOT IN (SELECT prompt_id FROM gold_items)")
    # An adjudication replaces the annotators' votes on its prompt.
    where.append(
        "(r.source = 'adjudication' OR r.prompt_id NOT IN "
        "(SELECT prompt_id FROM rankings WHERE source = 'adjudication' AND status = 'submitted'))"
    )
    return " AND ".join(where), params


def votes_sql(
    *, dataset_id: int | None = None, source: str = "all", names: bool = False, quality: bool = False
) -> tuple[str, list]:
    """SELECT of every vote: one row per (ranking, answer pair), the pair ordered lo < hi by generation id.

    Columns: prompt_id, ranking_id, source, created_at, lo, hi, dir (1: lo preferred, -1: hi preferred,
    0: tie), margin, and with `names` the annotator's name. Reads the derived `pairs` table.
    """
    where, params = voters_sql(dataset_id=dataset_id, source=source, quality=quality)
    sql = f"""SELECT p.prompt_id, p.ranking_id, r.source, r.created_at,
                     least(p.chosen_id, p.rejected_id) AS lo, greatest(p.chosen_id, p.rejected_id) AS hi,
                     CASE WHEN p.is_tie THEN 0 WHEN p.chosen_id < p.rejected_id THEN 1 ELSE -1 END AS dir,
                     p.margin, p.chosen_id, p.rejected_id, p.is_tie{", u.name AS annotator" if names else ""}
              FROM pairs p JOIN rankings r ON r.id = p.ranking_id
              {"JOIN users u ON u.id = r.user_id" if names else ""}
              WHERE {where}"""  # fragments are constants; values are parameters
    return sql, params


def consensus_pairs_sql(
    *,
    dataset_id: int | None = None,
    source: str = "all",
    provenance: bool = False,
    quality: bool = False,
    weighted: bool = False,
) -> tuple[str, list]:
    """SELECT of the consensus pairs: one row per answer pair of a prompt (method: module docstring).

    Columns: prompt_id, chosen_id, rejected_id, is_tie, votes_chosen, votes_rejected, votes_tie, n_votes,
    agreement, margin; with provenance also ranking_ids, annotators, sources (lists, in ranking order),
    first_ranked_at, last_ranked_at. For a consensus tie chosen_id < rejected_id.

    Prompts with one voting ranking (the common case at scale) skip the aggregation: their votes are the
    consensus as they stand, which saves a GROUP BY over millions of rows.

    `quality`: votes of the annotators in x_excluded are left out. `weighted`: the direction of a pair is that of
    the reliability-weighted posterior in the temporary table x_weighted (prompt_id, lo, hi, p_lo; see
    db.reliability), and `agreement` is that posterior's confidence, max(p_lo, 1 - p_lo); a pair without a
    posterior (only ties, or only adjudication votes) keeps the majority. Every prompt is aggregated then.
    """
    votes, params = votes_sql(dataset_id=dataset_id, source=source, names=provenance, quality=quality)
    voters, vparams = voters_sql(dataset_id=dataset_id, source=source, quality=quality)
    one_out = many_agg = many_out = ""
    if provenance:
        many_agg = """, list(ranking_id ORDER BY ranking_id) AS ranking_ids,
                       list(annotator ORDER BY ranking_id) AS annotators,
                       list(DISTINCT source ORDER BY source) AS sources,
                       min(created_at) AS first_ranked_at, max(created_at) AS last_ranked_at"""
        many_out = ", a.ranking_ids, a.annotators, a.sources, a.first_ranked_at, a.last_ranked_at"
        one_out = (
            ", [v.ranking_id] AS ranking_ids, [v.annotator] AS annotators, [v.source] AS sources, "
            "v.created_at AS first_ranked_at, v.created_at AS last_ranked_at"
        )
    majority = "CASE WHEN a.v_lo + a.v_hi = 0 THEN 1.0 ELSE greatest(a.v_lo, a.v_hi) / (a.v_lo + a.v_hi) END"
    lo_wins, tie, agreement, join = "a.v_lo >= a.v_hi", "a.v_lo = a.v_hi", majority, ""
    if weighted:  # a posterior of exactly 0.5 (or none) leaves the pair to the majority
        decided = "coalesce(w.p_lo, 0.5) <> 0.5"
        lo_wins = f"CASE WHEN {decided} THEN w.p_lo > 0.5 ELSE a.v_lo >= a.v_hi END"
        tie = f"(NOT {decided} AND a.v_lo = a.v_hi)"
        agreement = f"CASE WHEN w.p_lo IS NOT NULL THEN greatest(w.p_lo, 1 - w.p_lo) ELSE {majority} END"
        join = "LEFT JOIN x_weighted w ON w.prompt_id = a.prompt_id AND w.lo = a.lo AND w.hi = a.hi"
    several = 0 if weighted else 1  # weighted: every prompt goes through the aggregation
    sql = f"""WITH v AS ({votes}),
              multi AS (SELECT r.prompt_id FROM rankings r WHERE {voters} GROUP BY r.prompt_id
                        HAVING count(*) > {several}),
              a AS (SELECT prompt_id, lo, hi,
                           count(*) FILTER (WHERE dir = 1) AS v_lo, count(*) FILTER (WHERE dir = -1) AS v_hi,
                           count(*) FILTER (WHERE dir = 0) AS v_tie, count(*) AS n_votes,
                           avg(margin) FILTER (WHERE dir = 1) AS m_lo, avg(margin) FILTER (WHERE dir = -1) AS m_hi
                           {many_agg}
                    FROM v WHERE prompt_id IN (SELECT prompt_id FROM multi) GROUP BY prompt_id, lo, hi)
              SELECT v.prompt_id, v.chosen_id, v.rejected_id, v.is_tie,
                     CAST(CASE WHEN v.is_tie THEN 0 ELSE 1 END AS INTEGER) AS votes_chosen,
                     CAST(0 AS INTEGER) AS votes_rejected,
                     CAST(CASE WHEN v.is_tie THEN 1 ELSE 0 END AS INTEGER) AS votes_tie,
                     CAST(1 AS INTEGER) AS n_votes, CAST(1.0 AS DOUBLE) AS agreement,
                     CAST(v.margin AS DOUBLE) AS margin {one_out}
              FROM v WHERE v.prompt_id NOT IN (SELECT prompt_id FROM multi)
              UNION ALL
              SELECT a.prompt_id,
                     CASE WHEN {lo_wins} THEN a.lo ELSE a.hi END AS chosen_id,
                     CASE WHEN {lo_wins} THEN a.hi ELSE a.lo END AS rejected_id,
                     {tie} AS is_tie,
                     CAST(CASE WHEN {lo_wins} THEN a.v_lo ELSE a.v_hi END AS INTEGER) AS votes_chosen,
                     CAST(CASE WHEN {lo_wins} THEN a.v_hi ELSE a.v_lo END AS INTEGER) AS votes_rejected,
                     CAST(a.v_tie AS INTEGER) AS votes_tie, CAST(a.n_votes AS INTEGER) AS n_votes,
                     {agreement}::DOUBLE AS agreement,
                     coalesce(CASE WHEN {tie} THEN 0 WHEN {lo_wins} THEN a.m_lo ELSE a.m_hi END, 0)::DOUBLE AS margin
                     {many_out}
              FROM a {join}"""
    return sql, [*params, *vparams]


def ranked_pairs(items: list[int], votes: Mapping[tuple[int, int], tuple[int, int, int]]) -> dict[int, int]:
    """Tideman's ranked pairs over `items`; returns {item: rank}, 1 best, ties share a rank.

    `votes[(a, b)]` with a < b is (votes for a, votes for b, tie votes). Pairs without votes are ties.
    """
    majorities = []
    for (a, b), (va, vb, _) in votes.items():
        if va == vb:
            continue
        win, lose, vw, vl = (a, b, va, vb) if va > vb else (b, a, vb, va)
        majorities.append((-vw, -(vw - vl), vl, win, lose))
    majorities.sort()
    beats: dict[int, set[int]] = defaultdict(set)  # locked edges: winner -> losers

    def reaches(src: int, dst: int) -> bool:
        stack, seen = [src], {src}
        while stack:
            node = stack.pop()
            if node == dst:
                return True
            for nxt in beats[node] - seen:
                seen.add(nxt)
                stack.append(nxt)
        return False

    for *_, win, lose in majorities:
        if not reaches(lose, win):  # locking win -> lose would close a cycle
            beats[win].add(lose)
    # rank = 1 + longest locked chain above the item (the locked graph is acyclic)
    above: dict[int, set[int]] = defaultdict(set)
    for win, losers in beats.items():
        for lose in losers:
            above[lose].add(win)
    depth: dict[int, int] = {}

    def rank_of(item: int) -> int:
        if item not in depth:
            depth[item] = 1 + max((rank_of(w) for w in above[item]), default=0)
        return depth[item]

    return {item: rank_of(item) for item in items}


def votes_from_rankings(rankings: Mapping[int, Mapping[int, int]]) -> dict[tuple[int, int], tuple[int, int, int]]:
    """Pair votes from rankings {ranking: {generation: rank}}: votes[(a, b)], a < b = (for a, for b, ties)."""
    tally: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    for ranks in rankings.values():
        gens = sorted(ranks)
        for i, a in enumerate(gens):
            for b in gens[i + 1 :]:
                ra, rb = ranks[a], ranks[b]
                tally[(a, b)][0 if ra < rb else 1 if rb < ra else 2] += 1
    return {k: tuple(v) for k, v in tally.items()}


def consensus_ranks(rankings: Mapping[int, Mapping[int, int]]) -> dict[int, int]:
    """The ranked-pairs consensus {generation: rank} of several rankings of one prompt."""
    items = sorted({g for ranks in rankings.values() for g in ranks})
    return ranked_pairs(items, votes_from_rankings(rankings))


def prompt_rankings(store, prompt_id: int, *, source: str = "all") -> dict[int, dict[int, int]]:
    """{ranking_id: {generation_id: rank}} of the submitted rankings that vote on one prompt."""
    allowed = source_values(source)
    where, params = ["r.prompt_id = ?", "r.status = 'submitted'"], [prompt_id]
    if allowed is not None:
        where.append(f"r.source IN ({','.join('?' * len(allowed))})")
        params.extend(allowed)
    rows = store.query(
        f"""SELECT r.id AS ranking_id, r.source, i.generation_id, i.rank
            FROM rankings r JOIN ranking_items i ON i.ranking_id = r.id
            WHERE {" AND ".join(where)} ORDER BY r.id, i.generation_id""",
        params,
    )
    if any(r["source"] == "adjudication" for r in rows):
        rows = [r for r in rows if r["source"] == "adjudication"]
    out: dict[int, dict[int, int]] = defaultdict(dict)
    for r in rows:
        out[r["ranking_id"]][r["generation_id"]] = r["rank"]
    return dict(out)


def consensus_order(store, prompt_id: int, *, source: str = "all") -> list[dict]:
    """The consensus order of one prompt's answers, best first: [{generation_id, rank, wins, losses}].

    wins/losses count the answers this one beats / loses to by pair majority (before cycle-breaking).
    """
    rankings = prompt_rankings(store, prompt_id, source=source)
    votes = votes_from_rankings(rankings)
    ranks = consensus_ranks(rankings)
    wins: dict[int, int] = defaultdict(int)
    losses: dict[int, int] = defaultdict(int)
    for (a, b), (va, vb, _) in votes.items():
        if va != vb:
            w, l_ = (a, b) if va > vb else (b, a)
            wins[w] += 1
            losses[l_] += 1
    return [
        {"generation_id": g, "rank": r, "wins": wins[g], "losses": losses[g]}
        for g, r in sorted(ranks.items(), key=lambda kv: (kv[1], kv[0]))
    ]
