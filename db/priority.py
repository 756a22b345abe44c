"""Stored prompt priorities (active selection): what `preflab prioritize` writes and the queue and sampler read.

    replace_priorities(store, dataset_id, [(prompt_id, score, "ensemble"), ...])   # the dataset's new scores
    priorities(store, dataset_id)        # {prompt_id: (score, estimator)}
    labelled_pairs(store, dataset_id)    # consensus pairs to fit the estimate on

A higher score means a label there is worth more. The scores come from serving.active (the estimate, documented
there); this module holds their SQL only. Whether the queue follows them is the dataset's `selection` setting
(db.settings): 'order' (prompt id order, the default) or 'uncertainty' (highest score first).
"""

from __future__ import annotations

import json

from db.consensus import consensus_pairs_sql
from db.errors import InputError

ESTIMATORS = ("ensemble", "novelty")


def replace_priorities(store, dataset_id: int, rows: list[tuple[int, float, str]]) -> int:
    """Replace the dataset's scores with `rows` [(prompt_id, score, estimator)] in one transaction; returns the
    number stored. InputError for an unknown estimator or a prompt of another dataset (nothing changes)."""
    for _, score, estimator in rows:
        if estimator not in ESTIMATORS:
            raise InputError(f"estimator must be one of {', '.join(ESTIMATORS)}, not {estimator!r}", field="estimator")
        if score != score:  # NaN would sort unpredictably
            raise InputError("a priority score must be a number, got NaN", field="score")
    with store.transaction() as c:
        ids = [r[0] for r in rows]
        if ids:
            outside = c.execute(
                "SELECT count(*) FROM unnest(?) t(id) LEFT JOIN prompts p ON p.id = t.id "
                "WHERE p.dataset_id IS DISTINCT FROM ?",
                [ids, dataset_id],
            ).fetchone()[0]
            if outside:
                raise InputError(f"{outside} prompt id(s) are not in this dataset", field="prompt_id")
        c.execute("DELETE FROM prompt_priority WHERE dataset_id = ?", [dataset_id])
        if rows:
            c.executemany(
                "INSERT INTO prompt_priority (prompt_id, dataset_id, score, estimator) VALUES (?, ?, ?, ?)",
                [(int(p), dataset_id, float(s), e) for p, s, e in rows],
            )
    return len(rows)


def priorities(store, dataset_id: int) -> dict[int, tuple[float, str]]:
    """{prompt_id: (score, estimator)} of the dataset's stored scores."""
    rows = store.query("SELECT prompt_id, score, estimator FROM prompt_priority WHERE dataset_id = ?", [dataset_id])
    return {r["prompt_id"]: (r["score"], r["estimator"]) for r in rows}


def labelled_pairs(store, dataset_id: int) -> list[tuple[int, int, int]]:
    """(prompt_id, chosen_id, rejected_id) of the dataset's consensus pairs (every source that votes, ties left
    out): what the estimate is fitted on."""
    sql, params = consensus_pairs_sql(dataset_id=dataset_id, source="all")
    with store._lock:
        rows = store.con.execute(
            f"SELECT prompt_id, chosen_id, rejected_id FROM ({sql}) WHERE NOT is_tie ORDER BY prompt_id, chosen_id",
            params,
        ).fetchall()
    return [tuple(r) for r in rows]


def _prompt_text(messages_json: str) -> str:
    """The conversation so far as one text (role: content lines), what the prompt side of the estimate embeds."""
    messages = json.loads(messages_json)
    return "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in messages if isinstance(m, dict))


def dataset_texts(store, dataset_id: int) -> tuple[dict[int, str], dict[int, list[tuple[int, str]]]]:
    """({prompt_id: prompt text}, {prompt_id: [(generation_id, answer text)]}) of every prompt of the dataset;
    gold prompts are left out (they are checks, not training data)."""
    with store._lock:
        prompts = store.con.execute(
            "SELECT id, CAST(messages AS VARCHAR) FROM prompts WHERE dataset_id = ? "
            "AND id NOT IN (SELECT prompt_id FROM gold_items) ORDER BY id",
            [dataset_id],
        ).fetchall()
        gens = store.con.execute(
            "SELECT g.prompt_id, g.id, g.text FROM generations g JOIN prompts p ON p.id = g.prompt_id "
            "WHERE p.dataset_id = ? ORDER BY g.prompt_id, g.id",
            [dataset_id],
        ).fetchall()
    answers: dict[int, list[tuple[int, str]]] = {}
    for pid, gid, text in gens:
        answers.setdefault(pid, []).append((gid, text))
    return {pid: _prompt_text(m) for pid, m in prompts}, answers
