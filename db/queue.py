"""The assignment queue: who ranks which prompt next, under a lease, at most k annotators per prompt.

    from db import queue
    lease = queue.next_assignment(store, dataset_id, user_id)       # None when nothing is left
    ranking_id = queue.submit(store, user_id, lease["assignment_id"], status="submitted", ranks={...})
    ranking_id, lease, progress = queue.submit_and_next(store, user_id, aid, status=..., ranks=...)  # the server

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

Cost per request (bench/annotate.py): DuckDB charges ~1-4 ms for each statement on the shared 2-core
machine, more for plans with many joins, and grows with the data where a correlated subquery meets a big
table. So a submit and the next lease are one transaction of 13 statements from BEGIN to a single COMMIT,
the reads in it are point lookups on primary keys with constants, and the answer texts and the progress are
read after the commit on another cursor (`reader`), off the lock.
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


# The last ids handed out by the sequences of generations and rankings: a catalog lookup, where max(id) would scan a
# million rows. Every id of those tables comes from them, so "anything newer than the mark" is id > mark.
_LAST_IDS = (
    "(SELECT coalesce(max(last_value) FILTER (WHERE sequence_name = 'seq_generations'), 0) AS gmax, "
    "coalesce(max(last_value) FILTER (WHERE sequence_name = 'seq_rankings'), 0) AS rmax FROM duckdb_sequences()) x"
)


# ---- the dataset's queue state ----------------------------------------------------------------------

# What a request needs from the dataset row and the queue's bookkeeping, in one statement: the settings an item
# shows (k, guidelines), the sync marks and the sequences' last ids (is anything new?). Cost note: DuckDB spends
# more on a plan with many joins and correlated subqueries than on a few plain statements, so each statement
# here is a point lookup on a primary key (or a tiny table) plus constants, never a subquery per outer row.
_STATE_COLS = (
    "d.id, d.name, d.annotators_per_prompt, d.guidelines, d.guideline_version, s.generation_mark, s.ranking_mark, "
    "s.k, x.gmax, x.rmax"
)
_STATE = f"SELECT {_STATE_COLS} FROM datasets d LEFT JOIN queue_sync s ON s.dataset_id = d.id, {_LAST_IDS}"
# The user's live leases (usually none or one), to hand back their own lease instead of a new one; with
# `id = ? OR`, the assignment being submitted comes in the same statement.
_LEASES = (
    "SELECT id, prompt_id, status, expires_at, answer_order FROM assignments "
    "WHERE {extra} (user_id = ? AND status = 'leased' AND expires_at > ?) ORDER BY id"
)


def _state(cols: tuple, leases: list) -> dict:
    did, name, k, guidelines, version, gmark, rmark, mk, gmax, rmax = cols
    return {
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
    leases = store.con.execute(_LEASES.format(extra=""), [user_id, now]).fetchall()
    return _state(row, _live_leases(leases, now))


def _in_step(state: dict) -> bool:
    mark = state["mark"]
    return mark is not None and mark[2] == state["k"] and mark[0] >= state["gmax"] and mark[1] >= state["rmax"]


# ---- keeping queue_open in step --------------------------------------------------------------------


def sync(store: Store, dataset_id: int) -> int:
    """Fold generations and rankings written since the last call into queue_open; returns k."""
    with store.transaction():
        state = _read_state(store, dataset_id, -1, datetime.max)
        if not _in_step(state):
            _fold_in(store, dataset_id, state["k"], state["mark"], state["gmax"], state["rmax"])
        return state["k"]


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
                ORDER BY p.id""",  # constant SQL
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
                  AND n < ?""",
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

# an open prompt with a free slot that this user has not ranked and does not hold; `{front}` limits the look to the
# first few. Joins with the live leases and the user's rankings, not a correlated subquery per open prompt (2-3x
# cheaper). The user's own live leases count when they take a second one (lease_ahead).
_PICK = """SELECT f.prompt_id FROM (SELECT prompt_id, done FROM queue_open WHERE dataset_id = ? {front}) f
           LEFT JOIN (SELECT prompt_id, count(*) AS n, bool_or(user_id = ?) AS mine FROM assignments
                      WHERE status = 'leased' AND expires_at > ? GROUP BY prompt_id) l ON l.prompt_id = f.prompt_id
           WHERE f.done + coalesce(l.n, 0) < ? AND NOT coalesce(l.mine, false)
             AND f.prompt_id NOT IN (SELECT prompt_id FROM rankings WHERE user_id = ?)
           ORDER BY f.prompt_id LIMIT 1"""

# rankings this user made today (any dataset); open prompts here minus the user's rankings of open ones
# (two cheap scans beat an anti-join 4x; no join with prompts, whose size would show in every request)
_PROGRESS = """(SELECT count(*) FROM rankings r WHERE r.user_id = ? AND r.created_at >= ? AND r.source = 'human'),
               (SELECT count(*) FROM queue_open WHERE dataset_id = ?) - (SELECT count(*) FROM queue_open
                WHERE dataset_id = ? AND prompt_id IN (SELECT prompt_id FROM rankings WHERE user_id = ?))"""


def _progress_params(dataset_id: int, user_id: int, now: datetime) -> list:
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return [user_id, midnight, dataset_id, dataset_id, user_id]


def _pick_and_progress(
    store: Store, dataset_id: int, user_id: int, k: int, now: datetime, *, pick: bool, progress: bool = True
) -> tuple[int | None, dict | None]:
    """(next open prompt for this user or None, progress) in one statement; a full scan only if the front is full."""
    pick_sql = f"({_PICK.format(front='ORDER BY prompt_id LIMIT ?')})" if pick else "NULL"
    pick_params = [dataset_id, FRONT, user_id, now, k, user_id] if pick else []
    progress_sql, progress_params = _PROGRESS, _progress_params(dataset_id, user_id, now)
    if not progress:
        progress_sql, progress_params = "NULL, NULL", []
    prompt_id, done_today, remaining = store._first(
        f"SELECT {pick_sql}, {progress_sql}",  # constant SQL
        [*pick_params, *progress_params],
    )
    if pick and prompt_id is None:  # all of the front is taken or ranked by this user
        row = store._first(_PICK.format(front=""), [dataset_id, user_id, now, k, user_id])
        prompt_id = row[0] if row else None
    return prompt_id, {"done_today": done_today, "remaining": remaining} if progress else None


_CONTENT = (
    "p.dataset_id, p.messages, p.assets, "
    "(SELECT list(struct_pack(id := g.id, text := g.text)) FROM generations g WHERE g.prompt_id = ?)"
)


def _content(store: Store, prompt_id: int, new_id: bool) -> tuple:
    """(new assignment id or None, dataset id, messages JSON, assets JSON, {generation id: text}) of a prompt."""
    aid_sql = "nextval('seq_assignments')" if new_id else "NULL"
    row = store._first(
        f"SELECT {aid_sql}, {_CONTENT} FROM prompts p WHERE p.id = ?",
        [prompt_id, prompt_id],
    )
    aid, dataset_id, messages, assets, gens = row
    return aid, dataset_id, messages, assets, {g["id"]: g["text"] for g in gens or []}


def _new_id_and_answers(store: Store, prompt_id: int) -> tuple:
    """_content's shape with only what the lease needs (a new assignment id, the answer ids); texts come later."""
    aid, ids = store._first(
        "SELECT nextval('seq_assignments'), list(id) FROM generations WHERE prompt_id = ?", [prompt_id]
    )
    return aid, None, None, None, dict.fromkeys(ids or [])


def _lease_view(state: dict, aid: int, prompt_id: int, order: list, expires_at, content: tuple) -> dict:
    _, _, messages, assets, texts = content
    return {
        "assignment_id": aid,
        "prompt_id": prompt_id,
        "answer_order": order,
        "expires_at": expires_at,
        "texts": texts,
        "messages": messages,
        "assets": assets,
        "dataset": state["dataset"],
        "dataset_id": state["dataset_id"],
        "guidelines": state["guidelines"],
        "guideline_version": state["guideline_version"],
    }


def _next_in_tx(
    store: Store,
    state: dict,
    user_id: int,
    now: datetime,
    lease_s: int,
    created_by: str,
    *,
    defer: bool = False,
    skip: int | None = None,
) -> tuple[dict | None, dict | None]:
    """(the user's live lease here, or a new one on the next open prompt, or None; progress). In a transaction.

    The Store lock is what keeps check-then-insert safe against other threads (the server is one process).
    `defer`: leave the answer texts and the progress out (None); _finish reads them after the commit.
    `skip`: a lease of the user's not to hand back (lease_ahead: the one they are working on); a new lease is
    never on a prompt the user holds.
    """
    dataset_id = state["dataset_id"]
    for aid, prompt_id, order_json, expires_at in state["leases"]:  # one in another dataset costs a lookup; rare
        if aid == skip:
            continue
        content = _content(store, prompt_id, new_id=False)
        if content[1] == dataset_id:
            progress = None if defer else _pick_and_progress(store, dataset_id, user_id, 0, now, pick=False)[1]
            return _lease_view(state, aid, prompt_id, json.loads(order_json), expires_at, content), progress
    if not _in_step(state):
        _fold_in(store, dataset_id, state["k"], state["mark"], state["gmax"], state["rmax"])
    k = state["k"]
    prompt_id, progress = _pick_and_progress(store, dataset_id, user_id, k, now, pick=True, progress=not defer)
    if prompt_id is None:
        return None, progress
    content = _new_id_and_answers(store, prompt_id) if defer else _content(store, prompt_id, new_id=True)
    aid, texts = content[0], content[4]
    order = sorted(texts)
    random.Random(aid).shuffle(order)  # per annotator, reproducible from the assignment id
    expires_at = now + timedelta(seconds=lease_s)
    store.con.execute(
        "INSERT INTO assignments (id, prompt_id, user_id, status, answer_order, leased_at, expires_at, created_by,"
        " created_at) VALUES (?, ?, ?, 'leased', ?, ?, ?, ?, ?)",
        [aid, prompt_id, user_id, json.dumps(order), now, expires_at, created_by, now],
    )
    return _lease_view(state, aid, prompt_id, order, expires_at, content), progress


def _finish(reader: Store, lease: dict | None, dataset_id: int, user_id: int, now: datetime) -> dict:
    """After the commit, on `reader` (a cursor of its own, off the Store lock): the progress, and the lease's
    prompt and answer texts if they were deferred, in one statement. Returns the progress."""
    params = _progress_params(dataset_id, user_id, now)
    with reader._lock:
        if lease is None or lease["messages"] is not None:
            done_today, remaining = reader._first(f"SELECT {_PROGRESS}", params)  # constant SQL
        else:
            done_today, remaining, _, messages, assets, gens = reader._first(
                f"SELECT {_PROGRESS}, {_CONTENT} FROM prompts p WHERE p.id = ?",
                [*params, lease["prompt_id"], lease["prompt_id"]],
            )
            lease.update(messages=messages, assets=assets, texts={g["id"]: g["text"] for g in gens or []})
    return {"done_today": done_today, "remaining": remaining}


def next_item(
    store: Store,
    user_id: int,
    *,
    dataset: str | None = None,
    dataset_id: int | None = None,
    lease_s: int = DEFAULT_LEASE_S,
    now: datetime | None = None,
    created_by: str = "server",
    reader: Store | None = None,
) -> tuple[dict | None, dict]:
    """(lease or None, progress) in `dataset` (a name) or `dataset_id`: the user's live lease, else a new one.

    A lease is {assignment_id, prompt_id, answer_order (generation ids as shown), expires_at, texts, messages,
    assets, dataset, guidelines, guideline_version}: everything the annotator sees. NotFoundError for an unknown
    dataset name. One transaction, a handful of statements whatever the size of the dataset. With `reader` (a
    Store on another cursor of the same database, e.g. serving.deps.thread_reader), the texts and the progress
    are read after the commit, outside the Store lock that other requests wait for.
    """
    now = _now(now)
    with store.transaction():
        state = _read_state(store, dataset_id, user_id, now, name=dataset)
        lease, progress = _next_in_tx(store, state, user_id, now, lease_s, created_by, defer=reader is not None)
    if reader is not None:
        progress = _finish(reader, lease, state["dataset_id"], user_id, now)
    return lease, progress


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

    Returns {assignment_id, prompt_id, answer_order (generation ids as shown), expires_at, ...} (see next_item).
    """
    return next_item(store, user_id, dataset_id=dataset_id, lease_s=lease_s, now=now, created_by=created_by)[0]


def release(store: Store, user_id: int, assignment_id: int) -> bool:
    """Give a lease back at once (the annotator moved on); its slot returns to the queue. True if it was leased,
    False if it was already submitted, released or expired; NotFoundError if the assignment is not the user's
    (someone else's lease is theirs to keep)."""
    with store._lock:
        owner = store._first("SELECT user_id FROM assignments WHERE id = ?", [assignment_id])
        if owner is None or owner[0] != user_id:
            raise NotFoundError(f"no assignment {assignment_id} of yours")
        return bool(
            store.con.execute(
                "UPDATE assignments SET status = 'released' WHERE id = ? AND user_id = ? AND status = 'leased' "
                "RETURNING id",
                [assignment_id, user_id],
            ).fetchall()
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


def validate(status: str, ranks: dict | None, order: list[int], skip_reason, flag_reason, comment) -> dict[int, int]:
    """The dense ranks of a submit of an assignment whose answers are `order`; InputError naming the field."""
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


_NEXT_RANKING = "nextval('seq_rankings')"


def write_items(store: Store, ranking_id: int, prompt_id: int, order: list, clean: dict, status: str) -> None:
    """A human ranking's items (rank and shown position of each answer) and, if submitted, its pairs. In a
    transaction; `order` is the answer order the annotator saw, `clean` the dense ranks (may be empty)."""
    if not clean:
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


# The submitted assignment's prompt: its dataset's state and its count in queue_open (point lookups, constants)
_PROMPT_STATE = (
    f"SELECT {_STATE_COLS}, (SELECT done FROM queue_open WHERE prompt_id = ?) FROM prompts p "
    f"JOIN datasets d ON d.id = p.dataset_id LEFT JOIN queue_sync s ON s.dataset_id = d.id, {_LAST_IDS} WHERE p.id = ?"
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
) -> tuple[int, dict]:
    """Write the ranking, its items and pairs, close the lease, keep queue_open in step; (ranking id, state).

    `ranking_id`: one reserved by lease_ahead (the server's journaled submits), else the sequence's next.
    `created_at`: when the annotator submitted, if earlier than `now` (the time the lease is judged at)."""
    rows = store.con.execute(
        _LEASES.format(extra="(id = ? AND user_id = ?) OR"), [assignment_id, user_id, user_id, now]
    ).fetchall()
    row = next((r for r in rows if r[0] == assignment_id), None)
    if row is None:
        raise NotFoundError(f"no assignment {assignment_id} of yours")
    _, prompt_id, a_status, expires_at, order_json = row
    *cols, done = store._first(_PROMPT_STATE, [prompt_id, prompt_id])
    state = _state(tuple(cols), _live_leases(rows, now, skip=assignment_id))
    k, status = state["k"], fields["status"]
    order = json.loads(order_json)
    if a_status == "done":
        raise ConflictError(f"assignment {assignment_id} was already submitted")
    clean = validate(
        status, fields.get("ranks"), order, fields.get("skip_reason"), fields.get("flag_reason"), fields.get("comment")
    )
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
        if status == "submitted" and taken >= k:
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
    except duckdb.ConstraintException:  # UNIQUE (prompt_id, user_id): one ranking per person per prompt
        raise ConflictError(f"you already ranked prompt {prompt_id}") from None
    write_items(store, ranking_id, prompt_id, order, clean, status)
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
    now: datetime | None = None,
    created_by: str = "server",
) -> int:
    """Store the ranking of a leased assignment with its items and pairs, in one transaction; its id.

    An expired lease is still accepted while its slot is free (no work is lost); 409 (ConflictError) when
    the slot went to someone else or the assignment was already submitted.
    """
    fields = {
        "status": status,
        "ranks": ranks,
        "all_bad": all_bad,
        "skip_reason": skip_reason,
        "flag_reason": flag_reason,
        "comment": comment,
        "time_on_task_ms": time_on_task_ms,
    }
    with store.transaction():
        return _submit_in_tx(store, user_id, assignment_id, _now(now), created_by, fields)[0]


def submit_and_next(
    store: Store,
    user_id: int,
    assignment_id: int,
    *,
    lease_s: int = DEFAULT_LEASE_S,
    now: datetime | None = None,
    created_by: str = "server",
    reader: Store | None = None,
    **fields,
) -> tuple[int, dict | None, dict]:
    """submit() and next_item() in one transaction (one commit): (ranking id, next lease or None, progress).

    `fields` are submit()'s (status, ranks, ...); `reader` as in next_item. If the next lease fails, nothing is
    written; the caller may fall back to submit() then next_item() (serving/api_queue.py does), so a ranking
    is never lost to it.
    """
    now = _now(now)
    with store.transaction():
        ranking_id, state = _submit_in_tx(store, user_id, assignment_id, now, created_by, fields)
        lease, progress = _next_in_tx(store, state, user_id, now, lease_s, created_by, defer=reader is not None)
    if reader is not None:  # committed: nothing from here on may raise as if the ranking were not stored
        try:
            progress = _finish(reader, lease, state["dataset_id"], user_id, now)
        except duckdb.Error:
            progress = _finish(store, lease, state["dataset_id"], user_id, now)
    return ranking_id, lease, progress


def lease_ahead(
    store: Store,
    dataset_id: int,
    user_id: int,
    current: int,
    *,
    lease_s: int = DEFAULT_LEASE_S,
    now: datetime | None = None,
    created_by: str = "server",
    reader: Store | None = None,
) -> tuple[dict | None, dict, int | None]:
    """The item after `current` (the assignment a user is working on), leased now so their next submit can be
    answered from memory (serving.queue_front): (lease or None, progress, reserved ranking id or None).

    A live lease of theirs in this dataset other than `current` is that item (one leased ahead before a
    restart); else a second lease on a prompt they neither ranked nor hold, taking a slot like any lease.
    The ranking id is reserved from the sequence for the submit of the current item (apply_reserved), and the
    dataset's ranking mark moves past it, so the fold-in never counts that ranking: apply_reserved keeps
    queue_open in step itself. The progress is what it will be once the current item is submitted.
    """
    now = _now(now)
    with store.transaction():
        state = _read_state(store, dataset_id, user_id, now)
        if not _in_step(state):  # fold in whatever is new: then the mark is the sequence's last value
            _fold_in(store, dataset_id, state["k"], state["mark"], state["gmax"], state["rmax"])
            state["mark"] = (state["gmax"], state["rmax"], state["k"])
        lease, _ = _next_in_tx(store, state, user_id, now, lease_s, created_by, defer=True, skip=current)
        ranking_id = None
        if lease is not None:
            ranking_id = store._first(f"SELECT {_NEXT_RANKING}")[0]
            store.con.execute("UPDATE queue_sync SET ranking_mark = ? WHERE dataset_id = ?", [ranking_id, dataset_id])
    progress = _finish(reader or store, lease, dataset_id, user_id, now)
    progress = {"done_today": progress["done_today"] + 1, "remaining": max(0, progress["remaining"] - 1)}
    return lease, progress, ranking_id


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
    present = datetime.now()
    with store.transaction():
        if store._first("SELECT 1 FROM rankings WHERE id = ?", [ranking_id]):
            return False, False
        _submit_in_tx(
            store, user_id, assignment_id, max(now, present), created_by, fields, ranking_id=ranking_id, created_at=now
        )
        renewed = extend is not None and renew(store, extend[0], extend[1], now=present)
    return True, renewed


def renew(store: Store, assignment_id: int, expires_at: datetime, *, now: datetime | None = None) -> bool:
    """Move a live lease's expiry to `expires_at` (a lease handed out again); False if it lapsed or is closed."""
    with store._lock:
        return bool(
            store.con.execute(
                "UPDATE assignments SET expires_at = ? WHERE id = ? AND status = 'leased' AND expires_at > ? "
                "RETURNING id",
                [expires_at, assignment_id, _now(now)],
            ).fetchall()
        )


def dataset_of_ranking(store: Store, ranking_id: int) -> int:
    """The dataset id a ranking belongs to."""
    return store.scalar(
        "SELECT p.dataset_id FROM rankings r JOIN prompts p ON p.id = r.prompt_id WHERE r.id = ?", [ranking_id]
    )


# ---- progress ------------------------------------------------------------------------------------------


def progress(store: Store, dataset_id: int, user_id: int, *, now: datetime | None = None) -> dict:
    """{done_today, remaining}: rankings this user made today (in any dataset), open prompts here not ranked yet."""
    with store._lock:
        return _pick_and_progress(store, dataset_id, user_id, 0, _now(now), pick=False)[1]


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
