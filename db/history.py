"""An annotator's own rankings: the history page's list, one ranking as they saw it, and changing it.

    from db import history
    rows = history.mine(store, user_id, limit=20, offset=0)          # newest first, with `editable`
    one = history.own(store, user_id, ranking_id)                    # prompt, answers in their order, ranks
    history.change(store, user_id, ranking_id, status="submitted", ranks={"31": 1, "29": 2})

A ranking can be changed while its prompt is open: fewer than k counted rankings (db.queue's rule) and no
adjudication. Closed means its rankings went into agreement numbers and exports as a set, so a late change
would alter numbers people already read. Changing rewrites the ranking's items and re-derives its pairs in
one transaction, and keeps queue_open in step (a skip turned into a ranking takes a slot, and the reverse
frees one), so the queue never hands out more than k slots.
"""

from __future__ import annotations

import json
from datetime import datetime

from db import queue
from db.errors import ConflictError, NotFoundError
from db.store import Store

SNIPPET_CHARS = 160


def snippet(messages_json: str | None, limit: int = SNIPPET_CHARS) -> str:
    """The last user turn of a prompt on one line, cut at `limit` characters (what the list shows)."""
    try:
        messages = json.loads(messages_json or "[]")
    except ValueError:
        return ""
    users = [m for m in messages if isinstance(m, dict) and m.get("role", "user") == "user"] or messages
    if not users:
        return ""
    content = users[-1].get("content") if isinstance(users[-1], dict) else users[-1]
    if isinstance(content, list):  # OpenAI-style parts
        content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    text = " ".join(str(content or "").split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _open_state(store: Store, prompt_ids: list[int]) -> dict[int, tuple[int, bool]]:
    """{prompt id: (counted rankings, adjudicated)} for a few prompts; one grouped read."""
    if not prompt_ids:
        return {}
    marks = ",".join("?" * len(prompt_ids))
    srcs = ", ".join(f"'{s}'" for s in queue.COUNTED_SOURCES)
    rows = store.con.execute(
        f"""SELECT prompt_id, count(*) FILTER (WHERE status = 'submitted' AND source IN ({srcs})),
                   bool_or(source = 'adjudication')
            FROM rankings WHERE prompt_id IN ({marks}) GROUP BY prompt_id""",  # constant SQL
        prompt_ids,
    ).fetchall()
    return {pid: (n, bool(adj)) for pid, n, adj in rows}


def _is_open(state: tuple[int, bool] | None, k: int) -> bool:
    counted, adjudicated = state or (0, False)
    return counted < k and not adjudicated


def mine(store: Store, user_id: int, *, dataset_id: int | None = None, limit: int = 20, offset: int = 0) -> list[dict]:
    """The user's rankings made on the Rank page, newest first: {id, prompt_id, dataset, status, all_bad,
    comment, guideline_version, time_on_task_ms, created_at, snippet, editable}."""
    where, params = "", [user_id]
    if dataset_id is not None:
        where, params = " AND p.dataset_id = ?", [user_id, dataset_id]
    with store._lock:
        cur = store.con.execute(
            "SELECT r.id, r.prompt_id, d.name AS dataset, d.annotators_per_prompt AS k, r.status, r.all_bad, "
            "r.comment, r.guideline_version, r.time_on_task_ms, CAST(r.created_at AS VARCHAR) AS created_at, "
            "p.messages FROM rankings r JOIN prompts p ON p.id = r.prompt_id JOIN datasets d ON d.id = p.dataset_id "
            f"WHERE r.user_id = ? AND r.source = 'human'{where} ORDER BY r.id DESC LIMIT ? OFFSET ?",
            [*params, int(limit), int(offset)],
        )
        cols = [c[0] for c in cur.description]
        rows = [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
        states = _open_state(store, sorted({r["prompt_id"] for r in rows}))
    for row in rows:
        row["snippet"] = snippet(row.pop("messages"))
        row["editable"] = _is_open(states.get(row["prompt_id"]), row.pop("k"))
    return rows


def owner_of(store: Store, ranking_id: int) -> int | None:
    """The user id of a ranking, or None if there is no such ranking."""
    return store.scalar("SELECT user_id FROM rankings WHERE id = ?", [ranking_id])


_ONE = (
    "SELECT r.id, r.prompt_id, r.user_id, r.source, r.status, r.all_bad, r.skip_reason, r.flag_reason, r.comment, "
    "CAST(r.created_at AS VARCHAR) AS created_at, d.id AS dataset_id, d.name AS dataset, d.annotators_per_prompt "
    "AS k, p.messages FROM rankings r JOIN prompts p ON p.id = r.prompt_id JOIN datasets d ON d.id = p.dataset_id "
    "WHERE r.id = ?"
)


def _load(store: Store, user_id: int, ranking_id: int) -> dict:
    cur = store.con.execute(_ONE, [ranking_id])
    cols = [c[0] for c in cur.description]
    rows = cur.fetchall()
    if not rows or rows[0][cols.index("user_id")] != user_id:
        raise NotFoundError(f"no ranking {ranking_id} of yours")
    row = dict(zip(cols, rows[0], strict=True))
    row["editable"] = row["source"] == "human" and _is_open(
        _open_state(store, [row["prompt_id"]]).get(row["prompt_id"]), row["k"]
    )
    return row


def _answer_order(store: Store, user_id: int, prompt_id: int, ranking_id: int) -> list[int]:
    """The answers in the order this annotator saw them: their assignment's order, else the stored positions."""
    row = store._first(
        "SELECT answer_order FROM assignments WHERE prompt_id = ? AND user_id = ? AND status = 'done' "
        "ORDER BY id DESC LIMIT 1",
        [prompt_id, user_id],
    )
    if row and row[0]:
        return [int(g) for g in json.loads(row[0])]
    rows = store.con.execute(
        "SELECT generation_id FROM ranking_items WHERE ranking_id = ? ORDER BY position, generation_id", [ranking_id]
    ).fetchall()
    return [r[0] for r in rows]


def own(store: Store, user_id: int, ranking_id: int) -> dict:
    """One of the user's rankings as they saw it: {id, prompt_id, dataset, status, all_bad, skip_reason,
    flag_reason, comment, created_at, editable, prompt: {id, messages}, answers: [{id, text}] in their order,
    ranks: {generation id: rank}}. No model names. NotFoundError if it is not theirs."""
    with store._lock:
        row = _load(store, user_id, ranking_id)
        order = _answer_order(store, user_id, row["prompt_id"], ranking_id)
        texts = dict(
            store.con.execute("SELECT id, text FROM generations WHERE prompt_id = ?", [row["prompt_id"]]).fetchall()
        )
        ranks = dict(
            store.con.execute(
                "SELECT generation_id, rank FROM ranking_items WHERE ranking_id = ?", [ranking_id]
            ).fetchall()
        )
    messages = json.loads(row.pop("messages") or "[]")
    for key in ("user_id", "source", "k", "dataset_id"):
        row.pop(key)
    return {
        **row,
        "prompt": {"id": row["prompt_id"], "messages": messages},
        "answers": [{"id": g, "text": texts[g]} for g in order if g in texts],
        "ranks": ranks,
    }


def change(
    store: Store,
    user_id: int,
    ranking_id: int,
    *,
    status: str,
    ranks: dict | None = None,
    all_bad: bool = False,
    skip_reason: str | None = None,
    flag_reason: str | None = None,
    comment: str | None = None,
    now: datetime | None = None,
) -> dict:
    """Replace one of the user's rankings (same fields as a submit) while its prompt is open; returns own().

    NotFoundError if it is not theirs; ConflictError if the prompt is closed, or if a skip or flag would become
    a ranking while every slot is taken (rankings + others' live leases = k); InputError as a submit."""
    now = now or datetime.now()
    with store.transaction():
        row = _load(store, user_id, ranking_id)
        prompt_id, k, old = row["prompt_id"], row["k"], row["status"]
        if row["source"] != "human":
            raise ConflictError(f"ranking {ranking_id} was not made on the Rank page and cannot be changed here")
        if not row["editable"]:
            raise ConflictError(
                f"prompt {prompt_id} is closed (it has its {k} ranking(s) or was adjudicated): "
                f"ranking {ranking_id} can no longer be changed"
            )
        order = _answer_order(store, user_id, prompt_id, ranking_id)
        clean = queue.validate(status, ranks, order, skip_reason, flag_reason, comment)
        counted = _open_state(store, [prompt_id]).get(prompt_id, (0, False))[0]
        if status == "submitted" and old != "submitted":
            leased = store._first(
                "SELECT count(*) FROM assignments WHERE prompt_id = ? AND status = 'leased' AND expires_at > ? "
                "AND user_id <> ?",
                [prompt_id, now, user_id],
            )[0]
            if counted + leased >= k:
                raise ConflictError(
                    f"every slot of prompt {prompt_id} is taken ({k} ranking(s) and leases): "
                    "it cannot take your ranking now"
                )
        c = store.con
        c.execute(
            "UPDATE rankings SET status = ?, all_bad = ?, skip_reason = ?, flag_reason = ?, comment = ? WHERE id = ?",
            [status, bool(all_bad), skip_reason, flag_reason, comment, ranking_id],
        )
        c.execute("DELETE FROM pairs WHERE ranking_id = ?", [ranking_id])
        c.execute("DELETE FROM ranking_items WHERE ranking_id = ?", [ranking_id])
        queue.write_items(store, ranking_id, prompt_id, order, clean, status)
        done = counted - (old == "submitted") + (status == "submitted")
        if done != counted and store._first("SELECT 1 FROM queue_sync WHERE dataset_id = ?", [row["dataset_id"]]):
            # the fold-in only sees rankings with new ids, so an edit keeps queue_open in step itself
            if done >= k:
                c.execute("DELETE FROM queue_open WHERE prompt_id = ?", [prompt_id])
            else:
                c.execute(
                    "INSERT OR REPLACE INTO queue_open (prompt_id, dataset_id, done) VALUES (?, ?, ?)",
                    [prompt_id, row["dataset_id"], done],
                )
    return own(store, user_id, ranking_id)
