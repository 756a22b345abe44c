"""Leases: the next item an annotator ranks, handed out under a lease, at most k annotators per prompt.

Rules: a prompt is eligible when it has >= 2 answers (>= 1 in a 'rate' dataset); it is handed to a user who
has not ranked it while (submitted rankings + live leases of others) < k; a user asking again gets their own live
lease back (same prompt, same answer order); expired leases free their slot; complete prompts leave the queue.
Gold prompts (known order, db.gold) are mixed in at the dataset's gold rate, apart from k, and look like any other
item; a paused annotator gets no new item. Open prompts go out in id order, or, when the dataset's selection is
'uncertainty' (db.settings), highest stored priority (db.priority) first, unscored prompts after in id order.
lease_ahead leases a second item for the server's in-memory front (serving.api.queue_front).
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

from db.errors import ForbiddenError, NotFoundError
from db.queue.state import _NEXT_RANKING, _fold_in, _in_step, _now, _read_state
from db.store import Store

DEFAULT_LEASE_S = 600  # 10 minutes: long enough to read four long answers, short enough to recycle abandoned work
FRONT = 256  # open prompts looked at first; a full scan only when all of them are taken or ranked by this user


# an open prompt with a free slot that this user has not ranked and does not hold; `{front}` limits the look to the
# first few. Joins with the live leases and the user's rankings, not a correlated subquery per open prompt (2-3x
# cheaper). The user's own live leases count when they take a second one (lease_ahead).
_PICK = """SELECT f.prompt_id FROM ({open} WHERE q.dataset_id = ? {front}) f
           LEFT JOIN (SELECT prompt_id, count(*) AS n, bool_or(user_id = ?) AS mine FROM assignments
                      WHERE status = 'leased' AND expires_at > ? GROUP BY prompt_id) l ON l.prompt_id = f.prompt_id
           WHERE f.done + coalesce(l.n, 0) < ? AND NOT coalesce(l.mine, false)
             AND f.prompt_id NOT IN (SELECT prompt_id FROM rankings WHERE user_id = ?)
           ORDER BY {order} LIMIT 1"""
# per selection: the open prompts (with their score) and their order (inside the front, then outside it); 'order'
# stays a scan of queue_open alone
_SELECT = {
    "order": ("SELECT q.prompt_id, q.done FROM queue_open q", "prompt_id", "f.prompt_id"),
    "uncertainty": (
        "SELECT q.prompt_id, q.done, pp.score FROM queue_open q LEFT JOIN prompt_priority pp ON pp.prompt_id = "
        "q.prompt_id",
        "score DESC NULLS LAST, prompt_id",
        "f.score DESC NULLS LAST, f.prompt_id",
    ),
}


def _pick_sql(selection: str, *, front: bool) -> str:
    """_PICK for a selection ('order' or 'uncertainty'); `front`: only the first FRONT open prompts (one parameter)."""
    open_sql, inner, outer = _SELECT[selection]
    return _PICK.format(open=open_sql, front=f"ORDER BY {inner} LIMIT ?" if front else "", order=outer)


# rankings this user made today (any dataset); open prompts here minus the user's rankings of open ones
# (two cheap scans beat an anti-join 4x; no join with prompts, whose size would show in every request)
_PROGRESS = """(SELECT count(*) FROM rankings r WHERE r.user_id = ? AND r.created_at >= ? AND r.source = 'human'),
               (SELECT count(*) FROM queue_open WHERE dataset_id = ?) - (SELECT count(*) FROM queue_open
                WHERE dataset_id = ? AND prompt_id IN (SELECT prompt_id FROM rankings WHERE user_id = ?))"""


def _progress_params(dataset_id: int, user_id: int, now: datetime) -> list:
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return [user_id, midnight, dataset_id, dataset_id, user_id]


def _pick_and_progress(
    store: Store,
    dataset_id: int,
    user_id: int,
    k: int,
    now: datetime,
    *,
    pick: bool,
    progress: bool = True,
    selection: str = "order",
) -> tuple[int | None, dict | None]:
    """(next open prompt for this user or None, progress) in one statement; a full scan only if the front is full."""
    pick_sql = f"({_pick_sql(selection, front=True)})" if pick else "NULL"
    pick_params = [dataset_id, FRONT, user_id, now, k, user_id] if pick else []
    progress_sql, progress_params = _PROGRESS, _progress_params(dataset_id, user_id, now)
    if not progress:
        progress_sql, progress_params = "NULL, NULL", []
    prompt_id, done_today, remaining = store._first(
        f"SELECT {pick_sql}, {progress_sql}",  # constant SQL
        [*pick_params, *progress_params],
    )
    if pick and prompt_id is None:  # all of the front is taken or ranked by this user
        row = store._first(_pick_sql(selection, front=False), [dataset_id, user_id, now, k, user_id])
        prompt_id = row[0] if row else None
    return prompt_id, {"done_today": done_today, "remaining": remaining} if progress else None


_CONTENT = (
    "p.dataset_id, p.messages, p.assets, "
    "(SELECT list(struct_pack(id := g.id, text := g.text)) FROM generations g WHERE g.prompt_id = ?)"
)


_PAUSED = "SELECT paused FROM annotator_controls WHERE dataset_id = ? AND user_id = ?"
# The user's items in the dataset so far (gold ones included), and a gold prompt they have neither ranked nor hold,
# in an order of their own (gold tables are small: a few dozen to a few thousand rows).
_ITEMS_DONE = (
    "SELECT count(*) FROM rankings r JOIN prompts p ON p.id = r.prompt_id WHERE r.user_id = ? AND p.dataset_id = ?"
)
_PICK_GOLD = """SELECT gi.prompt_id FROM gold_items gi JOIN prompts p ON p.id = gi.prompt_id
                WHERE p.dataset_id = ? AND gi.prompt_id NOT IN (SELECT prompt_id FROM rankings WHERE user_id = ?)
                  AND gi.prompt_id NOT IN (SELECT prompt_id FROM assignments WHERE user_id = ? AND status = 'leased'
                                           AND expires_at > ?)
                ORDER BY hash(gi.prompt_id, ?) LIMIT 1"""


def gold_slot(user_id: int, block: int, size: int) -> int:
    """Where in the user's `block`-th run of `size` items the gold item goes: fixed per user and block, so asking
    again gives the same answer, and unknowable from the outside."""
    return random.Random(f"gold:{user_id}:{block}").randrange(size)


def _maybe_gold(store: Store, dataset_id: int, user_id: int, now: datetime, rate: float, *, ahead: bool) -> int | None:
    """A gold prompt for this user's next item when it is the gold slot of its block, else None.

    Gold items are mixed in at `rate`: one at a random place in every run of round(1 / rate) items, so an annotator
    meets exactly that share and cannot tell which. `ahead`: the item after the one being worked on (lease_ahead).
    """
    size = max(2, round(1 / rate))
    n = store._first(_ITEMS_DONE, [user_id, dataset_id])[0] + (1 if ahead else 0)
    if n % size != gold_slot(user_id, n // size, size):
        return None
    row = store._first(_PICK_GOLD, [dataset_id, user_id, user_id, now, user_id])
    return row[0] if row else None


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
        "task": state["task"],
        "aspects": state["aspects"],
        "rationale": state["rationale"],
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
        _fold_in(store, dataset_id, state)
    k = state["k"]
    if "paused" in state:  # read once for a batch of the server's writes (db.queue.batch)
        paused = user_id in state["paused"]
    else:
        row = store._first(_PAUSED, [dataset_id, user_id])
        paused = bool(row and row[0])
    if paused:
        raise ForbiddenError("a reviewer has paused your work on this dataset; ask them to resume it")
    prompt_id, progress = _pick_and_progress(
        store, dataset_id, user_id, k, now, pick=True, progress=not defer, selection=state["selection"]
    )
    if prompt_id is None:
        return None, progress
    if state["gold_rate"] > 0:
        gold = _maybe_gold(store, dataset_id, user_id, now, state["gold_rate"], ahead=skip is not None)
        prompt_id = gold or prompt_id
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
    Store on another cursor of the same database, e.g. serving.api.deps.thread_reader), the texts and the progress
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
    answered from memory (serving.api.queue_front): (lease or None, progress, reserved ranking id or None).

    A live lease of theirs in this dataset other than `current` is that item (one leased ahead before a
    restart); else a second lease on a prompt they neither ranked nor hold, taking a slot like any lease.
    The ranking id is reserved from the sequence for the submit of the current item (apply_reserved), and the
    dataset's ranking mark moves past it, so the fold-in never counts that ranking: apply_reserved keeps
    queue_open in step itself. The progress is what it will be once the current item is submitted.
    """
    now = _now(now)
    with store.transaction():
        lease, ranking_id = _ahead_in_tx(store, dataset_id, user_id, current, now, lease_s, created_by)
    return lease, ahead_progress(reader or store, lease, dataset_id, user_id, now), ranking_id


def _ahead_in_tx(
    store: Store,
    dataset_id: int,
    user_id: int,
    current: int,
    now: datetime,
    lease_s: int,
    created_by: str,
    state: dict | None = None,
    mark_later: bool = False,
) -> tuple[dict | None, int | None]:
    """lease_ahead's writes, in a transaction (the server's group commit, db.queue.batch.apply_batch): (lease with
    its texts still to read, or None; reserved ranking id or None). `state`: the dataset's and user's state as the
    user's submit just before in this transaction left it (as submit_and_next passes it on), else read here.
    `mark_later`: the caller moves the dataset's ranking mark to the state's before it commits (a batch)."""
    if state is None or state["dataset_id"] != dataset_id:
        state = _read_state(store, dataset_id, user_id, now)
    if not _in_step(state):  # fold in whatever is new: then the mark is the sequence's last value
        _fold_in(store, dataset_id, state)
        state["mark"] = (state["gmax"], state["rmax"], state["k"])
    lease, _ = _next_in_tx(store, state, user_id, now, lease_s, created_by, defer=True, skip=current)
    ranking_id = None
    if lease is not None:
        ranking_id = store._first(f"SELECT {_NEXT_RANKING}")[0]
        if not mark_later:
            store.con.execute("UPDATE queue_sync SET ranking_mark = ? WHERE dataset_id = ?", [ranking_id, dataset_id])
        state["mark"], state["rmax"] = (state["mark"][0], ranking_id, state["mark"][2]), ranking_id  # for a batch
    return lease, ranking_id


def ahead_progress(reader: Store, lease: dict | None, dataset_id: int, user_id: int, now: datetime) -> dict:
    """After an item ahead is committed: its texts (into `lease`) and the progress as it will be once the current
    item is submitted, read on `reader` (off the Store lock)."""
    progress = _finish(reader, lease, dataset_id, user_id, now)
    return {"done_today": progress["done_today"] + 1, "remaining": max(0, progress["remaining"] - 1)}


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


def progress(store: Store, dataset_id: int, user_id: int, *, now: datetime | None = None) -> dict:
    """{done_today, remaining}: rankings this user made today (in any dataset), open prompts here not ranked yet."""
    with store._lock:
        return _pick_and_progress(store, dataset_id, user_id, 0, _now(now), pick=False)[1]
