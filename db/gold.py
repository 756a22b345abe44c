"""Gold items: prompts whose answer order is known, and a dataset's gold rate.

    mark_gold(store, prompt_id, {41: 1, 42: 2, 43: 2}, by="rita")    # the known order (ties allowed)
    mark_gold(store, prompt_id, {41: 1}, kind="best", by="rita")     # only the best answer is known
    unmark_gold(store, prompt_id); list_gold(store, dataset_id); set_gold_rate(store, dataset_id, 0.05)

A gold prompt leaves the open queue: db.queue.leases mixes it into each annotator's items at the dataset's gold
rate (default 5%), apart from k, and it looks like any other item. Its rankings measure annotators
(db.quality.gold_flags, annotator_quality's gold_accuracy) and never become consensus pairs (db.consensus).
"""

from __future__ import annotations

from db.errors import InputError, NotFoundError

KINDS = ("order", "best")
DEFAULT_GOLD_RATE = 0.05


def mark_gold(store, prompt_id: int, ranks: dict[int, int], *, kind: str = "order", by: str) -> dict:
    """Make `prompt_id` a gold item with the known `ranks` {generation id: rank} (kind 'order': every answer of the
    prompt, 1 best, ties allowed) or the one best answer (kind 'best': {id: 1}; every other answer ranks 2).
    Marking again replaces the known order. Returns the stored gold item."""
    if kind not in KINDS:
        raise InputError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}", field="kind")
    with store.transaction() as c:
        row = c.execute("SELECT dataset_id FROM prompts WHERE id = ?", [prompt_id]).fetchall()
        if not row:
            raise NotFoundError(f"no prompt with id {prompt_id}")
        answers = [r[0] for r in c.execute("SELECT id FROM generations WHERE prompt_id = ?", [prompt_id]).fetchall()]
        if len(answers) < 2:
            raise InputError(f"prompt {prompt_id} has {len(answers)} answer(s); a gold item needs two or more")
        strange = sorted(set(ranks) - set(answers))
        if strange:
            raise InputError(f"answer(s) {strange} are not answers of prompt {prompt_id}", field="ranks")
        if any(not isinstance(r, int) or isinstance(r, bool) or r < 1 for r in ranks.values()):
            raise InputError("ranks are integers from 1 (best)", field="ranks")
        if kind == "best":
            if len(ranks) != 1 or next(iter(ranks.values())) != 1:
                raise InputError("kind 'best' takes exactly one answer, ranked 1", field="ranks")
            full = {g: 1 if g in ranks else 2 for g in answers}
        else:
            missing = sorted(set(answers) - set(ranks))
            if missing:
                raise InputError(f"rank every answer of the prompt; missing: {missing}", field="ranks")
            if len(set(ranks.values())) < 2:
                raise InputError("a known order must put at least one answer above another", field="ranks")
            levels = {r: i + 1 for i, r in enumerate(sorted(set(ranks.values())))}
            full = {g: levels[r] for g, r in ranks.items()}
        c.execute("DELETE FROM gold_answers WHERE prompt_id = ?", [prompt_id])
        c.execute("DELETE FROM gold_items WHERE prompt_id = ?", [prompt_id])
        c.execute("INSERT INTO gold_items (prompt_id, kind, created_by) VALUES (?, ?, ?)", [prompt_id, kind, by])
        c.execute(
            "INSERT INTO gold_answers (prompt_id, generation_id, rank) SELECT ?, unnest(?::BIGINT[]), "
            "unnest(?::INTEGER[])",
            [prompt_id, list(full), list(full.values())],
        )
        c.execute("DELETE FROM queue_open WHERE prompt_id = ?", [prompt_id])  # it is mixed in, not queued
    return gold_item(store, prompt_id)


def unmark_gold(store, prompt_id: int) -> bool:
    """Make a gold prompt an ordinary one again (it rejoins the queue on the next sync). False if it was not gold."""
    with store.transaction() as c:
        c.execute("DELETE FROM gold_answers WHERE prompt_id = ?", [prompt_id])
        gone = c.execute("DELETE FROM gold_items WHERE prompt_id = ? RETURNING prompt_id", [prompt_id]).fetchall()
        if gone:
            dataset = c.execute("SELECT dataset_id FROM prompts WHERE id = ?", [prompt_id]).fetchall()[0][0]
            c.execute("DELETE FROM queue_sync WHERE dataset_id = ?", [dataset])  # rebuild the open set
    return bool(gone)


def gold_item(store, prompt_id: int) -> dict | None:
    """{prompt_id, kind, ranks {generation id: rank}, created_by, created_at} or None."""
    row = store.row(
        "SELECT prompt_id, kind, created_by, CAST(created_at AS VARCHAR) AS created_at FROM gold_items "
        "WHERE prompt_id = ?",
        [prompt_id],
    )
    if row is None:
        return None
    ranks = store.query("SELECT generation_id, rank FROM gold_answers WHERE prompt_id = ?", [prompt_id])
    return {**row, "ranks": {r["generation_id"]: r["rank"] for r in ranks}}


def list_gold(store, dataset_id: int) -> list[dict]:
    """The dataset's gold items with how many submitted rankings each has, and a preview of the prompt."""
    return store.query(
        """SELECT gi.prompt_id, gi.kind, gi.created_by, CAST(gi.created_at AS VARCHAR) AS created_at,
                  (SELECT count(*) FROM rankings r WHERE r.prompt_id = gi.prompt_id AND r.status = 'submitted')
                      AS rankings,
                  left(CAST(p.messages->>'$[-1].content' AS VARCHAR), 120) AS preview
           FROM gold_items gi JOIN prompts p ON p.id = gi.prompt_id WHERE p.dataset_id = ? ORDER BY gi.prompt_id""",
        [dataset_id],
    )


def gold_rate(store, dataset_id: int) -> float:
    """The share of an annotator's items that are gold in this dataset."""
    row = store.row("SELECT gold_rate FROM dataset_settings WHERE dataset_id = ?", [dataset_id])
    return DEFAULT_GOLD_RATE if row is None else row["gold_rate"]


def set_gold_rate(store, dataset_id: int, rate: float) -> float:
    """Set the gold rate (0 turns gold items off; at most 0.5)."""
    if not 0 <= rate <= 0.5:
        raise InputError("the gold rate is a share from 0 (off) to 0.5, e.g. 0.05", field="gold_rate")
    with store.transaction() as c:
        c.execute(
            "INSERT INTO dataset_settings (dataset_id, gold_rate) VALUES (?, ?) "
            "ON CONFLICT (dataset_id) DO UPDATE SET gold_rate = excluded.gold_rate",
            [dataset_id, rate],
        )
    return rate
