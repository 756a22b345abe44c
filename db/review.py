"""Review SQL: disagreement per prompt, every ranking of a prompt side by side, adjudication, activity charts.

    from db import review
    review.disagreements(store, dataset_id, limit=20)     # lowest Kendall's W first
    review.adjudicate(store, prompt_id, {gen_id: rank}, reviewer="rita", comment="B is factual")
    review.flagged_and_skipped(store, dataset_id)         # the queue of prompts people skipped or flagged

An adjudication is the final ranking of a prompt: one per prompt, stored as a ranking with source
'adjudication' under the pseudo-user "adjudication" (kind 'consensus'), with the reviewer's name in
created_by; adjudicating again replaces it. Agreement measures leave adjudications out (db.agreement).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import datetime, timedelta

from db.agreement import kendall_w
from db.errors import InputError, NotFoundError
from db.queue import MAX_TEXT, dense_ranks, parse_ranks
from db.store import Store

ADJUDICATOR = "adjudication"


def _multi_ranked(store: Store, dataset_id: int | None) -> dict[int, dict[int, dict[int, int]]]:
    """{prompt: {ranking: {generation: rank}}} over submitted non-adjudication rankings of multi-ranked prompts."""
    where, params = "", []
    if dataset_id is not None:
        where, params = "AND p.dataset_id = ?", [dataset_id]
    rows = store.query(
        f"""WITH r AS (SELECT r.id, r.prompt_id FROM rankings r JOIN prompts p ON p.id = r.prompt_id
                       WHERE r.status = 'submitted' AND r.source <> 'adjudication' {where}),
                 multi AS (SELECT prompt_id FROM r GROUP BY prompt_id HAVING count(*) >= 2)
            SELECT r.prompt_id, r.id, i.generation_id, i.rank
            FROM r JOIN multi USING (prompt_id) JOIN ranking_items i ON i.ranking_id = r.id""",
        params,
    )
    out: dict[int, dict[int, dict[int, int]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        out[row["prompt_id"]][row["id"]][row["generation_id"]] = row["rank"]
    return out


def prompt_w(rankings: dict[int, dict[int, int]]) -> float | None:
    common = sorted(set.intersection(*(set(r) for r in rankings.values())))
    if len(common) < 2:
        return None
    w = kendall_w([[r[g] for g in common] for r in rankings.values()])
    return None if math.isnan(w) else w


def disagreements(store: Store, dataset_id: int | None, *, limit: int = 20) -> list[dict]:
    """Multi-ranked prompts with the least agreement (Kendall's W, 1 = identical rankings) first."""
    scored = []
    for prompt_id, rankings in _multi_ranked(store, dataset_id).items():
        w = prompt_w(rankings)
        if w is not None:
            scored.append((w, prompt_id, len(rankings)))
    scored.sort()
    top = scored[:limit]
    if not top:
        return []
    ids = [p for _, p, _ in top]
    marks = ",".join("?" * len(ids))
    info = {
        r["id"]: r
        for r in store.query(
            f"""SELECT p.id, CAST(p.messages AS VARCHAR) AS messages,
                   EXISTS (SELECT 1 FROM rankings a WHERE a.prompt_id = p.id AND a.source = 'adjudication')
                       AS adjudicated
            FROM prompts p WHERE p.id IN ({marks})""",
            ids,
        )
    }
    out = []
    for w, prompt_id, n in top:
        messages = json.loads(info[prompt_id]["messages"])
        last_user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        out.append(
            {
                "prompt_id": prompt_id,
                "rankings": n,
                "kendall_w": round(w, 4),
                "preview": last_user[:200],
                "adjudicated": bool(info[prompt_id]["adjudicated"]),
            }
        )
    return out


def flagged_and_skipped(
    store: Store, dataset_id: int | None, *, status: str | None = None, limit: int = 100
) -> list[dict]:
    """The review queue: rankings people skipped or flagged, newest first, with who, why, their comment, the
    prompt's last user turn and whether it was adjudicated since. `status`: 'skipped' | 'flagged' | None (both)."""
    where, params = ["r.status IN ('skipped', 'flagged')"], []
    if status is not None:
        where, params = ["r.status = ?"], [status]
    if dataset_id is not None:
        where.append("p.dataset_id = ?")
        params.append(dataset_id)
    rows = store.query(
        f"""SELECT r.id AS ranking_id, r.prompt_id, d.name AS dataset, u.name AS annotator, r.status,
                   coalesce(r.flag_reason, r.skip_reason) AS reason, r.comment,
                   CAST(r.created_at AS VARCHAR) AS created_at, CAST(p.messages AS VARCHAR) AS messages,
                   EXISTS (SELECT 1 FROM rankings a WHERE a.prompt_id = r.prompt_id AND a.source = 'adjudication')
                       AS adjudicated
            FROM rankings r JOIN prompts p ON p.id = r.prompt_id JOIN datasets d ON d.id = p.dataset_id
                 JOIN users u ON u.id = r.user_id
            WHERE {" AND ".join(where)} ORDER BY r.created_at DESC, r.id DESC LIMIT ?""",
        [*params, limit],
    )
    for row in rows:
        messages = json.loads(row.pop("messages"))
        row["preview"] = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")[:200]
        row["adjudicated"] = bool(row["adjudicated"])
    return rows


def prompt_rankings(store: Store, prompt_id: int) -> dict:
    """The prompt, its answers (with model names: reviewers see provenance) and every ranking of it."""
    rows = store.query(
        "SELECT p.id, CAST(p.messages AS VARCHAR) AS messages, CAST(p.assets AS VARCHAR) AS assets, "
        "d.name AS dataset FROM prompts p JOIN datasets d ON d.id = p.dataset_id WHERE p.id = ?",
        [prompt_id],
    )
    if not rows:
        raise NotFoundError(f"no prompt with id {prompt_id}")
    answers = store.query(
        "SELECT id, text, kind, model, adapter FROM generations WHERE prompt_id = ? ORDER BY id", [prompt_id]
    )
    rankings = store.query(
        "SELECT r.id AS ranking_id, u.name AS annotator, r.status, r.source, r.all_bad, r.skip_reason, "
        "r.flag_reason, r.comment, r.guideline_version, r.time_on_task_ms, r.created_by, "
        "CAST(r.created_at AS VARCHAR) AS created_at FROM rankings r JOIN users u ON u.id = r.user_id "
        "WHERE r.prompt_id = ? ORDER BY r.source = 'adjudication', r.id",
        [prompt_id],
    )
    items = store.query(
        "SELECT i.ranking_id, i.generation_id, i.rank, i.position FROM ranking_items i "
        "JOIN rankings r ON r.id = i.ranking_id WHERE r.prompt_id = ?",
        [prompt_id],
    )
    by_ranking: dict[int, dict] = defaultdict(dict)
    positions: dict[int, dict] = defaultdict(dict)
    for it in items:
        by_ranking[it["ranking_id"]][str(it["generation_id"])] = it["rank"]
        positions[it["ranking_id"]][str(it["generation_id"])] = it["position"]
    for r in rankings:
        r["ranks"] = by_ranking.get(r["ranking_id"], {})
        r["positions"] = positions.get(r["ranking_id"], {})
    p = rows[0]
    multi = {
        r["ranking_id"]: {int(g): k for g, k in r["ranks"].items()}
        for r in rankings
        if r["status"] == "submitted" and r["source"] != "adjudication" and r["ranks"]
    }
    return {
        "prompt": {
            "id": p["id"],
            "dataset": p["dataset"],
            "messages": json.loads(p["messages"]),
            "assets": json.loads(p["assets"]) if p["assets"] else [],
        },
        "answers": answers,
        "rankings": rankings,
        "kendall_w": prompt_w(multi) if len(multi) >= 2 else None,
    }


def adjudicate(store: Store, prompt_id: int, ranks: dict, *, reviewer: str, comment: str | None = None) -> int:
    """Record (or replace) the final ranking of a prompt; returns its ranking id."""
    if comment is not None and len(comment) > MAX_TEXT:
        raise InputError(f"too long ({len(comment)} characters; at most {MAX_TEXT})", field="comment")
    with store.transaction():
        row = store._first(
            "SELECT d.guideline_version FROM prompts p JOIN datasets d ON d.id = p.dataset_id WHERE p.id = ?",
            [prompt_id],
        )
        if row is None:
            raise NotFoundError(f"no prompt with id {prompt_id}")
        gens = [
            r[0]
            for r in store.con.execute(
                "SELECT id FROM generations WHERE prompt_id = ? ORDER BY id", [prompt_id]
            ).fetchall()
        ]
        if len(gens) < 2:  # nothing to order (and no ranking_items to insert: DuckDB refuses an empty batch)
            raise InputError(
                f"prompt {prompt_id} has {len(gens)} answer(s); a final ranking needs at least two", field="prompt_id"
            )
        clean = parse_ranks(ranks, gens, f"does not belong to prompt {prompt_id}")
        missing = [g for g in gens if g not in clean]
        if missing:
            raise InputError(f"rank every answer; missing answer {missing[0]}", field=f"ranks.{missing[0]}")
        clean = dense_ranks(clean)
        user = store._first("SELECT id FROM users WHERE name = ?", [ADJUDICATOR])
        if user is None:
            user = store.con.execute(
                "INSERT INTO users (name, role, kind, created_by) VALUES (?, 'annotator', 'consensus', ?) "
                "RETURNING id",
                [ADJUDICATOR, reviewer],
            ).fetchall()[0]
        existing = store._first("SELECT id FROM rankings WHERE prompt_id = ? AND user_id = ?", [prompt_id, user[0]])
        if existing:
            ranking_id = existing[0]
            store.con.execute(
                "UPDATE rankings SET comment = ?, created_by = ?, guideline_version = ?, created_at = ? WHERE id = ?",
                [comment, reviewer, row[0], datetime.now(), ranking_id],
            )
            # its items are written anew below, so answers added since the last adjudication are ranked too
            store.con.execute("DELETE FROM pairs WHERE ranking_id = ?", [ranking_id])
            store.con.execute("DELETE FROM ranking_items WHERE ranking_id = ?", [ranking_id])
        else:
            ranking_id = store.con.execute(
                "INSERT INTO rankings (prompt_id, user_id, status, source, comment, guideline_version, created_by) "
                "VALUES (?, ?, 'submitted', 'adjudication', ?, ?, ?) RETURNING id",
                [prompt_id, user[0], comment, row[0], reviewer],
            ).fetchall()[0][0]
        store.con.executemany(
            "INSERT INTO ranking_items (ranking_id, generation_id, rank) VALUES (?, ?, ?)",
            [[ranking_id, gid, rank] for gid, rank in clean.items()],
        )
        store._derive_pairs_for("?", [ranking_id])
        return ranking_id


def activity(store: Store, dataset: str | None, *, days: int = 90) -> dict:
    """Chart data: rankings per day, per annotator, and a histogram of per-prompt Kendall's W."""
    dataset_id = store.dataset_id(dataset) if dataset is not None else None
    where, params = "", []
    if dataset_id is not None:
        where, params = "AND p.dataset_id = ?", [dataset_id]
    since = datetime.now() - timedelta(days=days)
    per_day = store.query(
        f"""SELECT CAST(CAST(r.created_at AS DATE) AS VARCHAR) AS day, count(*) AS rankings
            FROM rankings r JOIN prompts p ON p.id = r.prompt_id
            WHERE r.source = 'human' AND r.created_at >= ? {where} GROUP BY 1 ORDER BY 1""",
        [since, *params],
    )
    per_annotator = store.query(
        f"""SELECT u.name AS annotator, count(*) AS rankings,
                   count(*) FILTER (WHERE r.status = 'skipped') AS skipped,
                   count(*) FILTER (WHERE r.status = 'flagged') AS flagged,
                   median(r.time_on_task_ms) AS median_time_ms
            FROM rankings r JOIN prompts p ON p.id = r.prompt_id JOIN users u ON u.id = r.user_id
            WHERE r.source <> 'adjudication' {where} GROUP BY 1 ORDER BY 2 DESC, 1""",
        params,
    )
    bins = [0] * 10
    for rankings in _multi_ranked(store, dataset_id).values():
        w = prompt_w(rankings)
        if w is not None:
            bins[min(int(w * 10), 9)] += 1
    return {
        "dataset": dataset,
        "per_day": per_day,
        "per_annotator": per_annotator,
        "agreement_distribution": [
            {"kendall_w_from": i / 10, "kendall_w_to": (i + 1) / 10, "prompts": n} for i, n in enumerate(bins)
        ],
    }
