"""Submits: a ranking written with its items and pairs, the lease closed and queue_open kept in step, in one
transaction; with the next lease in the same transaction (submit_and_next) or under a ranking id reserved
earlier (apply_reserved, the server's journaled submits).

Cost per request (bench/annotate.py): DuckDB charges ~1-4 ms for each statement on the shared 2-core
machine, more for plans with many joins, and grows with the data where a correlated subquery meets a big
table. So a submit and the next lease are one transaction of 13 statements from BEGIN to a single COMMIT,
the reads in it are point lookups on primary keys with constants, and the answer texts and the progress are
read after the commit on another cursor (`reader`), off the lock.
"""

from __future__ import annotations

import json
from datetime import datetime

import duckdb

from db.errors import ConflictError, NotFoundError
from db.queue import leases  # by module: a replaced leases._next_in_tx (tests) reaches every caller
from db.queue.rules import ranking_pairs, validate, validate_feedback
from db.queue.state import (
    _LAST_IDS,
    _LEASES,
    _NEXT_RANKING,
    _STATE_COLS,
    _STATE_JOINS,
    _counted_sql,
    _live_leases,
    _now,
    _state,
)
from db.store import Store


def write_items(
    store: Store, ranking_id: int, prompt_id: int, order: list, clean: dict, status: str, *, later: dict | None = None
) -> None:
    """A human ranking's items (rank and shown position of each answer) and, if submitted, its pairs. In a
    transaction; `order` is the answer order the annotator saw, `clean` the dense ranks (may be empty). `later`: a
    batch's rows to write (db.queue.batch), which these join instead of being written now."""
    if not clean:
        return
    if later is not None:
        later["items"].extend((ranking_id, g, clean[g], i) for i, g in enumerate(order))
        if status == "submitted":
            later["pairs"].extend((ranking_id, prompt_id, *pair) for pair in ranking_pairs(clean))
        return
    c = store.con  # one statement per table: the rows travel as lists, not as 4 or 7 parameters per row
    c.execute(
        "INSERT INTO ranking_items (ranking_id, generation_id, rank, position) "
        "SELECT ?, unnest(?::BIGINT[]), unnest(?::INTEGER[]), unnest(range(?))",
        [ranking_id, order, [clean[g] for g in order], len(order)],
    )
    pairs = ranking_pairs(clean)
    if pairs and status == "submitted":
        chosen, rejected, margin, tie = (list(col) for col in zip(*pairs, strict=True))
        c.execute(
            "INSERT INTO pairs (ranking_id, prompt_id, chosen_id, rejected_id, margin, is_tie, source) "
            "SELECT ?, ?, unnest(?::BIGINT[]), unnest(?::BIGINT[]), unnest(?::INTEGER[]), unnest(?::BOOLEAN[]), "
            "'human'",
            [ranking_id, prompt_id, chosen, rejected, margin, tie],
        )


def write_feedback(store: Store, ranking_id: int, prompt_id: int, user_id: int, by: str, extra: dict) -> None:
    """A submit's aspect ratings (table ratings), rationale (ranking_notes) and, for a 'rate' task, thumbs (feedback
    rows, source 'human'; a later thumbs of the same person on the same answer replaces the earlier). In a
    transaction; `extra` as db.queue.rules.validate_feedback returns it."""
    c = store.con
    rows = [(g, name, v) for g, per in extra["ratings"].items() for name, v in per.items()]
    if rows:
        gids, names, values = (list(col) for col in zip(*rows, strict=True))
        c.execute(
            "INSERT INTO ratings (ranking_id, generation_id, aspect, value) "
            "SELECT ?, unnest(?::BIGINT[]), unnest(?::VARCHAR[]), unnest(?::DOUBLE[])",
            [ranking_id, gids, names, values],
        )
    if extra["rationale"]:
        c.execute("INSERT INTO ranking_notes (ranking_id, rationale) VALUES (?, ?)", [ranking_id, extra["rationale"]])
    for gid, label in extra["thumbs"].items():
        c.execute(
            "INSERT INTO feedback (prompt_id, generation_id, user_id, label, source, created_by) "
            "VALUES (?, ?, ?, ?, 'human', ?) ON CONFLICT (generation_id, user_id, source_record) "
            "DO UPDATE SET label = excluded.label, source = excluded.source, created_by = excluded.created_by",
            [prompt_id, gid, user_id, label, by],
        )


# The submitted assignment's prompt: its dataset's state and its count in queue_open (point lookups, constants)
_PROMPT_STATE = (
    f"SELECT {_STATE_COLS}, (SELECT done FROM queue_open WHERE prompt_id = ?), "
    f"EXISTS (SELECT 1 FROM gold_items WHERE prompt_id = p.id) FROM prompts p "
    f"JOIN datasets d ON d.id = p.dataset_id {_STATE_JOINS}, {_LAST_IDS} WHERE p.id = ?"
)
# The same prompt's dataset, count and gold flag alone, for a batch that holds its dataset's state already
_PROMPT_ROW = (
    "SELECT p.dataset_id, (SELECT done FROM queue_open WHERE prompt_id = ?), "
    "EXISTS (SELECT 1 FROM gold_items WHERE prompt_id = ?) FROM prompts p WHERE p.id = ?"
)


def _submit_in_tx(
    store: Store,
    user_id: int,
    assignment_id: int,
    now: datetime,
    created_by: str,
    fields: dict,
    ranking_id: int | None = None,
    created_at: datetime | None = None,
    batch=None,
) -> tuple[int, dict]:
    """Write the ranking, its items and pairs, close the lease, keep queue_open in step; (ranking id, state).

    `ranking_id`: one reserved by lease_ahead (the server's journaled submits), else the sequence's next.
    `created_at`: when the annotator submitted, if earlier than `now` (the time the lease is judged at).
    `batch`: a db.queue.batch.Batch, which holds the dataset's state and takes the items and pairs to write."""
    rows = store.con.execute(
        _LEASES.format(extra="(id = ? AND user_id = ?) OR"), [assignment_id, user_id, user_id, now]
    ).fetchall()
    row = next((r for r in rows if r[0] == assignment_id), None)
    if row is None:
        raise NotFoundError(f"no assignment {assignment_id} of yours")
    _, prompt_id, a_status, expires_at, order_json = row
    live = _live_leases(rows, now, skip=assignment_id)
    if batch is None:
        *cols, done, gold = store._first(_PROMPT_STATE, [prompt_id, prompt_id])
        state = _state(tuple(cols), live)
    else:
        dataset_id, done, gold = store._first(_PROMPT_ROW, [prompt_id, prompt_id, prompt_id])
        state = batch.state(store, dataset_id, live)
        expires_at = batch.renewals.get(assignment_id, expires_at)  # a renewal the batch writes at its end
    k, status = state["k"], fields["status"]
    order = json.loads(order_json)
    if a_status == "done":
        raise ConflictError(f"assignment {assignment_id} was already submitted")
    clean = validate(
        status,
        fields.get("ranks"),
        order,
        fields.get("skip_reason"),
        fields.get("flag_reason"),
        fields.get("comment"),
        task=state["task"],
    )
    extra = validate_feedback(status, fields, order, state)
    if a_status != "leased" or expires_at <= now:  # the lease lapsed: accept only if the slot is still free
        taken, again = store._first(
            f"""SELECT (SELECT count(*) FROM rankings r WHERE r.prompt_id = ? AND {_counted_sql("r")})
                     + (SELECT count(*) FROM assignments a WHERE a.prompt_id = ? AND a.status = 'leased'
                        AND a.expires_at > ? AND a.id <> ?),
                       (SELECT min(id) FROM assignments a WHERE a.prompt_id = ? AND a.user_id = ?
                        AND a.status = 'leased' AND a.expires_at > ? AND a.id <> ?)""",
            [prompt_id, prompt_id, now, assignment_id, prompt_id, user_id, now, assignment_id],
        )
        if again is not None:  # one submit per prompt and person: the live lease is the one to submit
            raise ConflictError(
                f"your lease expired and prompt {prompt_id} was leased to you again as assignment {again}; "
                "submit that one"
            )
        if status == "submitted" and taken >= k and not gold:  # a gold prompt has no slots: everyone ranks it
            raise ConflictError(
                "your lease expired and the prompt has since been ranked by others; ask for the next item"
            )
    c = store.con
    try:
        ranking_id = c.execute(
            "INSERT INTO rankings (id, prompt_id, user_id, status, source, all_bad, skip_reason, flag_reason, "
            "comment, time_on_task_ms, guideline_version, created_by, created_at) "
            f"VALUES ({'?' if ranking_id else _NEXT_RANKING}, ?, ?, ?, 'human', ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            [
                *([ranking_id] if ranking_id else []),
                prompt_id,
                user_id,
                status,
                bool(fields.get("all_bad")),
                fields.get("skip_reason"),
                fields.get("flag_reason"),
                fields.get("comment"),
                fields.get("time_on_task_ms"),
                state["guideline_version"],
                created_by,
                created_at or now,
            ],
        ).fetchall()[0][0]
    except duckdb.ConstraintException:  # UNIQUE (prompt_id, user_id, ''): one ranking per person per prompt
        raise ConflictError(f"you already ranked prompt {prompt_id}") from None
    write_items(store, ranking_id, prompt_id, order, clean, status, later=None if batch is None else batch.rows)
    write_feedback(store, ranking_id, prompt_id, user_id, created_by, extra)
    c.execute("UPDATE assignments SET status = 'done' WHERE id = ?", [assignment_id])
    # keep queue_open in step directly instead of a sync; if nobody else wrote rankings since the last
    # sync, move the mark past ours so the next request has nothing to fold in
    if status == "submitted" and done is not None:
        if done + 1 >= k:
            c.execute("DELETE FROM queue_open WHERE prompt_id = ?", [prompt_id])
        else:
            c.execute("UPDATE queue_open SET done = done + 1 WHERE prompt_id = ?", [prompt_id])
    mark = state["mark"]
    if mark is not None and mark[1] >= state["rmax"] and ranking_id > mark[1]:  # (a reserved id is below the mark)
        c.execute("UPDATE queue_sync SET ranking_mark = ? WHERE dataset_id = ?", [ranking_id, state["dataset_id"]])
        state["mark"] = (mark[0], ranking_id, mark[2])
    state["rmax"] = max(state["rmax"], ranking_id)
    return ranking_id, state


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
    ratings: dict | None = None,
    rationale: str | None = None,
    thumbs: dict | None = None,
    now: datetime | None = None,
    created_by: str = "server",
) -> int:
    """Store the ranking of a leased assignment with its items and pairs, in one transaction; its id.

    An expired lease is still accepted while its slot is free (no work is lost); 409 (ConflictError) when
    the slot went to someone else or the assignment was already submitted. `ratings` {answer id: {aspect: value}},
    `rationale` and, in a 'rate' dataset, `thumbs` {answer id: bool} instead of `ranks` are checked against the
    dataset's settings (db.settings; rules.validate_feedback). A 'rate' submit is a ranking without items or pairs
    (so it fills a slot of k and counts in progress) plus one feedback row per answer.
    """
    fields = {
        "status": status,
        "ranks": ranks,
        "all_bad": all_bad,
        "skip_reason": skip_reason,
        "flag_reason": flag_reason,
        "comment": comment,
        "time_on_task_ms": time_on_task_ms,
        "ratings": ratings,
        "rationale": rationale,
        "thumbs": thumbs,
    }
    with store.transaction():
        return _submit_in_tx(store, user_id, assignment_id, _now(now), created_by, fields)[0]


def submit_and_next(
    store: Store,
    user_id: int,
    assignment_id: int,
    *,
    lease_s: int = leases.DEFAULT_LEASE_S,
    now: datetime | None = None,
    created_by: str = "server",
    reader: Store | None = None,
    **fields,
) -> tuple[int, dict | None, dict]:
    """submit() and next_item() in one transaction (one commit): (ranking id, next lease or None, progress).

    `fields` are submit()'s (status, ranks, ...); `reader` as in next_item. If the next lease fails, nothing is
    written; the caller may fall back to submit() then next_item() (serving/api/queue.py does), so a ranking
    is never lost to it.
    """
    now = _now(now)
    with store.transaction():
        ranking_id, state = _submit_in_tx(store, user_id, assignment_id, now, created_by, fields)
        lease, progress = leases._next_in_tx(store, state, user_id, now, lease_s, created_by, defer=reader is not None)
    if reader is not None:  # committed: nothing from here on may raise as if the ranking were not stored
        try:
            progress = leases._finish(reader, lease, state["dataset_id"], user_id, now)
        except duckdb.Error:
            progress = leases._finish(store, lease, state["dataset_id"], user_id, now)
    return ranking_id, lease, progress


def apply_reserved(
    store: Store,
    user_id: int,
    assignment_id: int,
    ranking_id: int,
    *,
    now: datetime,
    created_by: str,
    fields: dict,
    extend: tuple[int, datetime] | None = None,
) -> tuple[bool, bool]:
    """Store a submit the server acknowledged from memory, under its reserved ranking id, in one transaction;
    `extend` (assignment id, new expiry) renews the lease handed out with it. (stored, renewed).

    The ranking is dated `now` (when it was submitted), while the leases are judged at the present: a lease
    that lapsed before this runs (a server down for a while) is accepted only while its slot is free, as in
    submit(), and a lapsed lease is not renewed. Nothing is written (False) if the ranking id is already
    stored: replaying the server's journal twice changes nothing. ConflictError / NotFoundError / InputError
    as submit() when the database disagrees."""
    with store.transaction():
        return _reserved_and_state(
            store, user_id, assignment_id, ranking_id, now=now, created_by=created_by, fields=fields, extend=extend
        )[:2]


def _reserved_and_state(
    store: Store,
    user_id: int,
    assignment_id: int,
    ranking_id: int,
    *,
    now: datetime,
    created_by: str,
    fields: dict,
    extend: tuple[int, datetime] | None = None,
    batch=None,
) -> tuple[bool, bool, dict | None]:
    """apply_reserved's writes, in the caller's transaction: (stored, renewed, the state the submit left or None
    if nothing was stored, for the user's next step). `batch`: as in _submit_in_tx; it may take the renewal too."""
    present = datetime.now()
    if batch is not None:  # looked up for the whole batch at its start
        stored = ranking_id in batch.stored
    else:
        stored = store._first("SELECT 1 FROM rankings WHERE id = ?", [ranking_id]) is not None
    if stored:
        return False, False, None
    _, state = _submit_in_tx(
        store,
        user_id,
        assignment_id,
        max(now, present),
        created_by,
        fields,
        ranking_id=ranking_id,
        created_at=now,
        batch=batch,
    )
    if batch is not None:
        batch.stored.add(ranking_id)
    if extend is None:
        return True, False, state
    renewed = batch is not None and batch.defer_renewal(extend, state["leases"], present)
    return True, renewed or leases.renew(store, extend[0], extend[1], now=present), state
