"""The queue's bookkeeping: queue_open (a dataset's open prompts with their count of counted rankings; gold prompts
are never open: db.queue.leases mixes them in apart from k), queue_sync
(the marks of what is folded in), and the one-statement read of a dataset's state that every request starts with.

Speed: queue_open keeps only the *open* prompts of a dataset with their count of submitted rankings, so a
request looks at the first few hundred open prompts in id order instead of joining all prompts with all
generations. queue_sync holds high-water marks of generations and rankings already folded in; anything
written since (by the importer, the sampler or this package) is folded in on the next request, so other
writers need not know the queue exists. Everything runs under the Store lock in one transaction, which is
what keeps concurrent submits within k (the server is one process); UNIQUE(prompt_id, user_id, source_record) on
rankings (source_record is '' for people) backs up "one ranking per person".
"""

from __future__ import annotations

import json
from datetime import datetime

from db.queue.rules import COUNTED_SOURCES
from db.store import Store

_NEXT_RANKING = "nextval('seq_rankings')"


def _now(now: datetime | None) -> datetime:
    return now or datetime.now()


def _counted_sql(alias: str) -> str:
    srcs = ", ".join(f"'{s}'" for s in COUNTED_SOURCES)
    return f"{alias}.status = 'submitted' AND {alias}.source IN ({srcs})"


# The last ids handed out by the sequences of generations and rankings: a catalog lookup, where max(id) would scan a
# million rows. Every id of those tables comes from them, so "anything newer than the mark" is id > mark.
_LAST_IDS = (
    "(SELECT coalesce(max(last_value) FILTER (WHERE sequence_name = 'seq_generations'), 0) AS gmax, "
    "coalesce(max(last_value) FILTER (WHERE sequence_name = 'seq_rankings'), 0) AS rmax FROM duckdb_sequences()) x"
)


# What a request needs from the dataset row and the queue's bookkeeping, in one statement: the settings an item
# shows (k, guidelines), the sync marks and the sequences' last ids (is anything new?). Cost note: DuckDB spends
# more on a plan with many joins and correlated subqueries than on a few plain statements, so each statement
# here is a point lookup on a primary key (or a tiny table) plus constants, never a subquery per outer row.
_STATE_COLS = (
    "d.id, d.name, d.annotators_per_prompt, d.guidelines, d.guideline_version, s.generation_mark, s.ranking_mark, "
    "s.k, x.gmax, x.rmax, CASE WHEN EXISTS (SELECT 1 FROM gold_items gi JOIN prompts gp ON gp.id = gi.prompt_id "
    "WHERE gp.dataset_id = d.id) THEN coalesce(ds.gold_rate, 0.05) ELSE 0 END, "  # 0 while the dataset has no gold
    "coalesce(ds.task, 'rank'), CAST(ds.aspects AS VARCHAR), coalesce(ds.rationale, 'off'), "
    "coalesce(ds.selection, 'order')"
)
_STATE_JOINS = "LEFT JOIN queue_sync s ON s.dataset_id = d.id LEFT JOIN dataset_settings ds ON ds.dataset_id = d.id"
_STATE = f"SELECT {_STATE_COLS} FROM datasets d {_STATE_JOINS}, {_LAST_IDS}"
# The user's live leases (usually none or one), to hand back their own lease instead of a new one; with
# `id = ? OR`, the assignment being submitted comes in the same statement.
_LEASES = (
    "SELECT id, prompt_id, status, expires_at, answer_order FROM assignments "
    "WHERE {extra} (user_id = ? AND status = 'leased' AND expires_at > ?) ORDER BY id"
)


def _state(cols: tuple, leases: list) -> dict:
    did, name, k, guidelines, version, gmark, rmark, mk, gmax, rmax, gold_rate, task, aspects, rationale, sel = cols
    return {
        "gold_rate": gold_rate,
        "selection": sel,  # 'order' or 'uncertainty' (db.settings): which open prompt is handed out first
        # what an item asks (db.settings): every item of the dataset shows them, gold or not
        "task": task,
        "aspects": json.loads(aspects) if aspects else [],
        "rationale": rationale,
        "dataset_id": did,
        "dataset": name,
        "k": k,
        "guidelines": guidelines or "",
        "guideline_version": version,
        "mark": None if mk is None else (gmark, rmark, mk),
        "gmax": gmax,
        "rmax": rmax,
        "leases": leases,  # [(id, prompt_id, answer_order JSON, expires_at)] of the user's live leases
    }


def _live_leases(rows: list, now: datetime, skip: int | None = None) -> list:
    return [(r[0], r[1], r[4], r[3]) for r in rows if r[2] == "leased" and r[3] > now and r[0] != skip]


def _read_state(store: Store, dataset_id: int | None, user_id: int, now: datetime, name: str | None = None) -> dict:
    """The dataset's state (by id or name) and the user's live leases; NotFoundError for an unknown name."""
    where, key = ("d.name = ?", name) if name is not None else ("d.id = ?", dataset_id)
    row = store._first(f"{_STATE} WHERE {where}", [key])  # constant SQL
    if row is None:
        store.dataset_id(name if name is not None else str(dataset_id))  # raises NotFoundError naming the known
    return _state(row, _user_leases(store, user_id, now))


def _user_leases(store: Store, user_id: int, now: datetime) -> list:
    return _live_leases(store.con.execute(_LEASES.format(extra=""), [user_id, now]).fetchall(), now)


def _read_dataset(store: Store, dataset_id: int) -> dict:
    """The dataset's state without a user's leases, plus the set of its paused annotators: what a batch of the
    server's writes reads once and carries from step to step (db.queue.batch)."""
    row = store._first(f"{_STATE} WHERE d.id = ?", [dataset_id])  # constant SQL
    if row is None:
        store.dataset_id(str(dataset_id))  # raises NotFoundError naming the known
    state = _state(row, [])
    paused = store.con.execute(
        "SELECT user_id FROM annotator_controls WHERE dataset_id = ? AND paused", [dataset_id]
    ).fetchall()
    state["paused"] = {r[0] for r in paused}
    return state


def _in_step(state: dict) -> bool:
    mark = state["mark"]
    return mark is not None and mark[2] == state["k"] and mark[0] >= state["gmax"] and mark[1] >= state["rmax"]


def sync(store: Store, dataset_id: int) -> int:
    """Fold generations and rankings written since the last call into queue_open; returns k."""
    with store.transaction():
        state = _read_state(store, dataset_id, -1, datetime.max)
        if not _in_step(state):
            _fold_in(store, dataset_id, state)
        return state["k"]


def _fold_in(store: Store, dataset_id: int, state: dict) -> None:
    """Bring queue_open up to the state's sequence marks. A prompt is eligible with two answers to rank, or with
    one for a 'rate' task (thumbs on each answer); db.settings.set_settings rebuilds the set when the task changes."""
    k, mark, gmax, rmax = state["k"], state["mark"], state["gmax"], state["rmax"]
    least = 1 if state.get("task") == "rate" else 2
    c = store.con
    if mark is None or mark[2] != k:  # first use, or k changed: rebuild this dataset's open set
        c.execute("DELETE FROM queue_open WHERE dataset_id = ?", [dataset_id])
        c.execute(
            f"""INSERT INTO queue_open (prompt_id, dataset_id, done)
                SELECT p.id, p.dataset_id, coalesce(r.n, 0)
                FROM prompts p
                JOIN (SELECT prompt_id FROM generations GROUP BY prompt_id HAVING count(*) >= ?) g
                     ON g.prompt_id = p.id
                LEFT JOIN (SELECT prompt_id, count(*) AS n FROM rankings r WHERE {_counted_sql("r")}
                           GROUP BY prompt_id) r ON r.prompt_id = p.id
                WHERE p.dataset_id = ? AND coalesce(r.n, 0) < ?
                  AND p.id NOT IN (SELECT prompt_id FROM gold_items)
                ORDER BY p.id""",  # constant SQL
            [least, dataset_id, k],
        )
    else:
        c.execute(
            """CREATE OR REPLACE TEMP TABLE queue_touched AS
               SELECT DISTINCT t.prompt_id FROM (
                   SELECT prompt_id FROM generations WHERE id > ?
                   UNION ALL SELECT prompt_id FROM rankings WHERE id > ?) t
               JOIN prompts p ON p.id = t.prompt_id AND p.dataset_id = ?""",
            [mark[0], mark[1], dataset_id],
        )
        c.execute("DELETE FROM queue_open WHERE prompt_id IN (SELECT prompt_id FROM queue_touched)")
        c.execute(
            f"""INSERT INTO queue_open (prompt_id, dataset_id, done)
                SELECT t.prompt_id, ?, (SELECT count(*) FROM rankings r
                                        WHERE r.prompt_id = t.prompt_id AND {_counted_sql("r")}) AS n
                FROM queue_touched t
                WHERE (SELECT count(*) FROM generations g WHERE g.prompt_id = t.prompt_id) >= ?
                  AND n < ? AND t.prompt_id NOT IN (SELECT prompt_id FROM gold_items)""",
            [dataset_id, least, k],
        )
        c.execute("DROP TABLE queue_touched")
    c.execute(
        "INSERT OR REPLACE INTO queue_sync (dataset_id, generation_mark, ranking_mark, k) VALUES (?, ?, ?, ?)",
        [dataset_id, gmax, rmax, k],
    )


def invalidate(store: Store, dataset_id: int) -> None:
    """Force a rebuild of the dataset's open set on the next request (e.g. after k changed)."""
    with store._lock:
        store.con.execute("DELETE FROM queue_sync WHERE dataset_id = ?", [dataset_id])
