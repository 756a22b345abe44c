"""The assignment queue: who ranks which prompt next, under a lease, at most k annotators per prompt.

    from db import queue
    lease = queue.next_assignment(store, dataset_id, user_id)       # None when nothing is left
    ranking_id = queue.submit(store, user_id, lease["assignment_id"], status="submitted", ranks={...})

Rules (issue 4): a prompt is eligible when it has >= 2 answers; it is handed to a user who has not ranked
it while (submitted rankings + live leases of others) < k; a user asking again gets their own live lease
back (same prompt, same answer order); expired leases free their slot; complete prompts leave the queue.

Speed: queue_open keeps only the *open* prompts of a dataset with their count of submitted rankings, so a
request looks at the first few hundred open prompts in id order instead of joining all prompts with all
generations. queue_sync holds high-water marks of generations and rankings already folded in; anything
written since (by the importer, the sampler or this module) is folded in on the next request, so other
writers need not know the queue exists. Everything runs under the Store lock in one transaction, which is
what keeps concurrent submits within k (the server is one process); UNIQUE(prompt_id, user_id) on rankings
backs up "one ranking per person".
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

import duckdb

from db.errors import ConflictError, InputError, NotFoundError
from db.store import Store

DEFAULT_LEASE_S = 600  # 10 minutes: long enough to read four long answers, short enough to recycle abandoned work
FRONT = 256  # open prompts looked at first; a full scan only when all of them are taken or ranked by this user
COUNTED_SOURCES = ("human", "import", "synthetic")  # rankings that fill a slot (not adjudication or arena)
STATUSES = ("submitted", "skipped", "flagged")
MAX_TEXT = 10_000  # comment / reasons


def _now(now: datetime | None) -> datetime:
    return now or datetime.now()


def _counted_sql(alias: str) -> str:
    srcs = ", ".join(f"'{s}'" for s in COUNTED_SOURCES)
    return f"{alias}.status = 'submitted' AND {alias}.source IN ({srcs})"


# The last id handed out by a sequence: a catalog lookup, where max(id) would scan a million rows. Every id of
# generations and rankings comes from these sequences, so "anything newer than the mark" is id > mark.
_LAST_ID = "(SELECT coalesce(max(last_value), 0) FROM duckdb_sequences() WHERE sequence_name = '{seq}')"


# ---- keeping queue_open in step --------------------------------------------------------------------


def sync(store: Store, dataset_id: int) -> int:
    """Fold generations and rankings written since the last call into queue_open; returns k. Under the lock."""
    # one statement for the common case (nothing new): every request pays for this check
    k, gmark, rmark, mk, gmax, rmax = store._first(
        "SELECT d.annotators_per_prompt, s.generation_mark, s.ranking_mark, s.k, "
        f"{_LAST_ID.format(seq='seq_generations')}, {_LAST_ID.format(seq='seq_rankings')} "
        "FROM datasets d LEFT JOIN queue_sync s ON s.dataset_id = d.id WHERE d.id = ?",
        [dataset_id],
    )
    mark = None if mk is None else (gmark, rmark, mk)
    if mark is not None and mark[2] == k and mark[0] >= gmax and mark[1] >= rmax:
        return k
    with store.transaction():
        _fold_in(store, dataset_id, k, mark, gmax, rmax)
    return k


def _fold_in(store: Store, dataset_id: int, k: int, mark: tuple | None, gmax: int, rmax: int) -> None:
    c = store.con
    if mark is None or mark[2] != k:  # first use, or k changed: rebuild this dataset's open set
        c.execute("DELETE FROM queue_open WHERE dataset_id = ?", [dataset_id])
        c.execute(
            f"""INSERT INTO queue_open (prompt_id, dataset_id, done)
                SELECT p.id, p.dataset_id, coalesce(r.n, 0)
                FROM prompts p
                JOIN (SELECT prompt_id FROM generations GROUP BY prompt_id HAVING count(*) >= 2) g
                     ON g.prompt_id = p.id
                LEFT JOIN (SELECT prompt_id, count(*) AS n FROM rankings r WHERE {_counted_sql("r")}
                           GROUP BY prompt_id) r ON r.prompt_id = p.id
                WHERE p.dataset_id = ? AND coalesce(r.n, 0) < ?
                ORDER BY p.id""",  # noqa: S608 (constant SQL)
            [dataset_id, k],
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
                WHERE (SELECT count(*) FROM generations g WHERE g.prompt_id = t.prompt_id) >= 2
                  AND n < ?""",  # noqa: S608
            [dataset_id, k],
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


# ---- leases -------------------------------------------------------------------------------------------


def _own_live_lease(store: Store, dataset_id: int, user_id: int, now: datetime) -> dict | None:
    rows = store.con.execute(
        "SELECT id, prompt_id, answer_order, expires_at FROM assignments "
        "WHERE user_id = ? AND status = 'leased' AND expires_at > ? ORDER BY id",
        [user_id, now],
    ).fetchall()
    for aid, prompt_id, order, expires_at in rows:
        if store._first("SELECT dataset_id FROM prompts WHERE id = ?", [prompt_id])[0] == dataset_id:
            return {
                "assignment_id": aid,
                "prompt_id": prompt_id,
                "answer_order": json.loads(order),
                "expires_at": expires_at,
            }
    return None


def _pick(store: Store, dataset_id: int, user_id: int, k: int, now: datetime, front: int | None) -> int | None:
    limit = "ORDER BY prompt_id LIMIT ?" if front else ""
    params = [dataset_id, *([front] if front else []), now, k, user_id]
    row = store._first(
        f"""WITH f AS (SELECT prompt_id, done FROM queue_open WHERE dataset_id = ? {limit})
            SELECT f.prompt_id FROM f
            WHERE f.done + (SELECT count(*) FROM assignments a WHERE a.prompt_id = f.prompt_id
                            AND a.status = 'leased' AND a.expires_at > ?) < ?
              AND NOT EXISTS (SELECT 1 FROM rankings r WHERE r.prompt_id = f.prompt_id AND r.user_id = ?)
            ORDER BY f.prompt_id LIMIT 1""",  # noqa: S608 (constant SQL)
        params,
    )
    return row[0] if row else None


def next_assignment(
    store: Store,
    dataset_id: int,
    user_id: int,
    *,
    lease_s: int = DEFAULT_LEASE_S,
    now: datetime | None = None,
    created_by: str = "server",
) -> dict | None:
    """The user's live lease in this dataset, or a new one on the next open prompt; None if nothing is left.

    Returns {assignment_id, prompt_id, answer_order (generation ids as shown), expires_at}.
    """
    now = _now(now)
    # under the lock, no explicit transaction: the only write is one INSERT (atomic on its own), and the
    # lock is what keeps check-then-insert safe against other threads (sync opens its own when it works)
    with store._lock:
        own = _own_live_lease(store, dataset_id, user_id, now)
        if own:
            return own
        k = sync(store, dataset_id)
        prompt_id = _pick(store, dataset_id, user_id, k, now, FRONT)
        if prompt_id is None:
            prompt_id = _pick(store, dataset_id, user_id, k, now, None)
        if prompt_id is None:
            return None
        aid = store.con.execute("SELECT nextval('seq_assignments')").fetchall()[0][0]
        texts = dict(
            store.con.execute(
                "SELECT id, text FROM generations WHERE prompt_id = ? ORDER BY id", [prompt_id]
            ).fetchall()
        )
        order = sorted(texts)
        random.Random(aid).shuffle(order)  # per annotator, reproducible from the assignment id
        expires_at = now + timedelta(seconds=lease_s)
        store.con.execute(
            "INSERT INTO assignments (id, prompt_id, user_id, status, answer_order, leased_at, expires_at, created_by,"
            " created_at) VALUES (?, ?, ?, 'leased', ?, ?, ?, ?, ?)",
            [aid, prompt_id, user_id, json.dumps(order), now, expires_at, created_by, now],
        )
        return {
            "assignment_id": aid,
            "prompt_id": prompt_id,
            "answer_order": order,
            "expires_at": expires_at,
            "texts": texts,
        }


def release(store: Store, user_id: int, assignment_id: int) -> None:
    """Give a lease back at once (the annotator moved on); its slot returns to the queue."""
    with store._lock:
        store.con.execute(
            "UPDATE assignments SET status = 'released' WHERE id = ? AND user_id = ? AND status = 'leased'",
            [assignment_id, user_id],
        )


# ---- submitting -----------------------------------------------------------------------------------------


def ranking_pairs(ranks: dict[int, int]) -> list[tuple[int, int, int, bool]]:
    """(chosen, rejected, margin, is_tie) for every two answers: the rule of Store._derive_pairs_for, in Python.

    Computed here from the ranks in hand because the SQL version joins ranking_items with itself, a cost that
    grows with every ranking ever stored; tests/test_queue.py checks both give the same rows.
    """
    out = []
    for a, ra in ranks.items():
        for b, rb in ranks.items():
            if ra < rb or (ra == rb and a < b):
                out.append((a, b, rb - ra, ra == rb))
    return out


def dense_ranks(ranks: dict[int, int]) -> dict[int, int]:
    """{gen: rank} with ranks renumbered 1, 2, 3 ... keeping ties: {a: 1, b: 3, c: 3} -> {a: 1, b: 2, c: 2}."""
    levels = {r: i + 1 for i, r in enumerate(sorted(set(ranks.values())))}
    return {g: levels[r] for g, r in ranks.items()}


def parse_ranks(ranks: dict, answers: list[int], outsider: str) -> dict[int, int]:
    """{answer id: rank} from a request body: ids must be among `answers`, ranks integers >= 1.

    `outsider` finishes the message for an id that is not one of `answers` ("answer 7 <outsider>").
    """
    clean: dict[int, int] = {}
    for key, rank in ranks.items():
        try:
            gid = int(key)
        except (TypeError, ValueError):
            raise InputError(f"'{key}' is not an answer id", field=f"ranks.{key}") from None
        if gid not in answers:
            raise InputError(f"answer {gid} {outsider}", field=f"ranks.{key}")
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise InputError(f"rank must be an integer >= 1, got {rank!r}", field=f"ranks.{key}")
        clean[gid] = rank
    return clean


def _validate(status: str, ranks: dict | None, order: list[int], skip_reason, flag_reason, comment) -> dict[int, int]:
    if status not in STATUSES:
        raise InputError(f"status must be one of {', '.join(STATUSES)}, not '{status}'", field="status")
    for name, value in (("skip_reason", skip_reason), ("flag_reason", flag_reason), ("comment", comment)):
        if value is not None and len(value) > MAX_TEXT:
            raise InputError(f"too long ({len(value)} characters; at most {MAX_TEXT})", field=name)
    if status == "skipped" and not (skip_reason or "").strip():
        raise InputError("a skip needs a reason", field="skip_reason")
    if status == "flagged" and not (flag_reason or "").strip():
        raise InputError("a flag needs a reason", field="flag_reason")
    clean = parse_ranks(ranks or {}, order, "is not part of this assignment")
    if status == "submitted":
        missing = [g for g in order if g not in clean]
        if missing:
            raise InputError(
                f"every answer needs a rank; missing {len(missing)} (answer {missing[0]})", field=f"ranks.{missing[0]}"
            )
    elif clean and len(clean) != len(order):
        clean = {}  # a partial ranking on a skip or flag carries no preference
    return dense_ranks(clean) if clean else {}


def submit(
    store: Store,
    user_id: int,
    assignment_id: int,
    *,
    status: str,
    ranks: dict | None = None,
    all_bad: bool = False,
    skip_reason: str | None = None,
    flag_reason: str | None = None,
    comment: str | None = None,
    time_on_task_ms: int | None = None,
    now: datetime | None = None,
    created_by: str = "server",
) -> int:
    """Store the ranking of a leased assignment with its items and pairs, in one transaction; its id.

    An expired lease is still accepted while its slot is free (no work is lost); 409 (ConflictError) when
    the slot went to someone else or the assignment was already submitted.
    """
    now = _now(now)
    with store.transaction():
        row = store._first(
            "SELECT prompt_id, status, expires_at, answer_order FROM assignments WHERE id = ? AND user_id = ?",
            [assignment_id, user_id],
        )
        if row is None:
            raise NotFoundError(f"no assignment {assignment_id} of yours")
        prompt_id, a_status, expires_at, order_json = row
        order = json.loads(order_json)
        if a_status == "done":
            raise ConflictError(f"assignment {assignment_id} was already submitted")
        clean = _validate(status, ranks, order, skip_reason, flag_reason, comment)
        # point lookups only (ART indexes): cost stays flat as the dataset grows
        dataset_id, k, version = store._first(
            "SELECT p.dataset_id, d.annotators_per_prompt, d.guideline_version FROM prompts p, datasets d "
            "WHERE p.id = ? AND d.id = p.dataset_id",
            [prompt_id],
        )
        if a_status != "leased" or expires_at <= now:  # the lease lapsed: accept only if the slot is still free
            taken = store._first(
                f"""SELECT (SELECT count(*) FROM rankings r WHERE r.prompt_id = ? AND {_counted_sql("r")})
                         + (SELECT count(*) FROM assignments a WHERE a.prompt_id = ? AND a.status = 'leased'
                            AND a.expires_at > ? AND a.id <> ?)""",  # noqa: S608
                [prompt_id, prompt_id, now, assignment_id],
            )[0]
            if status == "submitted" and taken >= k:
                raise ConflictError(
                    "your lease expired and the prompt has since been ranked by others; ask for the next item"
                )
        mark, rmax, done = store._first(
            "SELECT (SELECT ranking_mark FROM queue_sync WHERE dataset_id = ?), "
            f"{_LAST_ID.format(seq='seq_rankings')}, (SELECT done FROM queue_open WHERE prompt_id = ?)",
            [dataset_id, prompt_id],
        )
        try:
            ranking_id = store.con.execute(
                "INSERT INTO rankings (prompt_id, user_id, status, source, all_bad, skip_reason, flag_reason, "
                "comment, time_on_task_ms, guideline_version, created_by, created_at) "
                "VALUES (?, ?, ?, 'human', ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                [
                    prompt_id,
                    user_id,
                    status,
                    bool(all_bad),
                    skip_reason,
                    flag_reason,
                    comment,
                    time_on_task_ms,
                    version,
                    created_by,
                    now,
                ],
            ).fetchall()[0][0]
        except duckdb.ConstraintException:  # UNIQUE (prompt_id, user_id): one ranking per person per prompt
            raise ConflictError(f"you already ranked prompt {prompt_id}") from None
        if clean:
            values = ", ".join(["(?, ?, ?, ?)"] * len(order))
            params = [v for i, gid in enumerate(order) for v in (ranking_id, gid, clean[gid], i)]
            store.con.execute(
                f"INSERT INTO ranking_items (ranking_id, generation_id, rank, position) VALUES {values}", params
            )
            pairs = ranking_pairs(clean)
            if pairs and status == "submitted":
                values = ", ".join(["(?, ?, ?, ?, ?, ?, 'human')"] * len(pairs))
                params = [v for c, r, m, t in pairs for v in (ranking_id, prompt_id, c, r, m, t)]
                store.con.execute(
                    "INSERT INTO pairs (ranking_id, prompt_id, chosen_id, rejected_id, margin, is_tie, "
                    f"source) VALUES {values}",
                    params,
                )
        store.con.execute("UPDATE assignments SET status = 'done' WHERE id = ?", [assignment_id])
        # keep queue_open in step directly instead of a sync; if nobody else wrote rankings since the last
        # sync, move the mark past ours so the next request has nothing to fold in
        if status == "submitted" and done is not None:
            if done + 1 >= k:
                store.con.execute("DELETE FROM queue_open WHERE prompt_id = ?", [prompt_id])
            else:
                store.con.execute("UPDATE queue_open SET done = done + 1 WHERE prompt_id = ?", [prompt_id])
        if mark is not None and mark >= rmax:
            store.con.execute("UPDATE queue_sync SET ranking_mark = ? WHERE dataset_id = ?", [ranking_id, dataset_id])
        return ranking_id


# ---- progress ------------------------------------------------------------------------------------------


def progress(store: Store, dataset_id: int, user_id: int, *, now: datetime | None = None) -> dict:
    """{done_today, remaining}: rankings this user made today (in any dataset), open prompts here not ranked yet."""
    now = _now(now)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with store._lock:  # one statement; no join with prompts, whose size would show in every request
        done_today, remaining = store._first(
            "SELECT (SELECT count(*) FROM rankings r WHERE r.user_id = ? AND r.created_at >= ? "
            "        AND r.source = 'human'), "
            # open prompts minus the user's rankings of open ones: two cheap scans beat an anti-join 4x
            "(SELECT count(*) FROM queue_open WHERE dataset_id = ?) - (SELECT count(*) FROM queue_open "
            " WHERE dataset_id = ? AND prompt_id IN (SELECT prompt_id FROM rankings WHERE user_id = ?))",
            [user_id, midnight, dataset_id, dataset_id, user_id],
        )
    return {"done_today": done_today, "remaining": remaining}


# ---- per-dataset settings ------------------------------------------------------------------------------


def get_dataset(store: Store, name: str) -> dict:
    rows = store.query(
        "SELECT id, name, description, annotators_per_prompt, guidelines, guideline_version, created_by, "
        "CAST(created_at AS VARCHAR) AS created_at FROM datasets WHERE name = ?",
        [name],
    )
    if not rows:
        store.dataset_id(name)  # raises NotFoundError listing the known names
    return rows[0]


def update_dataset(
    store: Store,
    name: str,
    *,
    k: int | None = None,
    guidelines: str | None = None,
    description: str | None = None,
    new: bool = False,
) -> dict:
    """Set k, guidelines or description; new guideline text bumps guideline_version (stored on each ranking).

    `new=True` (a dataset being created) keeps version 1 for its first text.
    """
    if k is not None and k < 1:
        raise InputError("annotators_per_prompt (k) must be >= 1", field="annotators_per_prompt")
    with store.transaction():
        current = get_dataset(store, name)
        if k is not None and k != current["annotators_per_prompt"]:
            store.con.execute("UPDATE datasets SET annotators_per_prompt = ? WHERE id = ?", [k, current["id"]])
            store.con.execute("DELETE FROM queue_sync WHERE dataset_id = ?", [current["id"]])  # rebuild with new k
        if guidelines is not None and guidelines != (current["guidelines"] or ""):
            bump = 0 if new else 1
            store.con.execute(
                "UPDATE datasets SET guidelines = ?, guideline_version = guideline_version + ? WHERE id = ?",
                [guidelines, bump, current["id"]],
            )
        if description is not None:
            store.con.execute("UPDATE datasets SET description = ? WHERE id = ?", [description, current["id"]])
    return get_dataset(store, name)
