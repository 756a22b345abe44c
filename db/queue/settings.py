"""A dataset's queue settings: k (annotators per prompt), guidelines with their version, and the description."""

from __future__ import annotations

from db.errors import InputError
from db.store import Store


def dataset_of_ranking(store: Store, ranking_id: int) -> int:
    """The dataset id a ranking belongs to."""
    return store.scalar(
        "SELECT p.dataset_id FROM rankings r JOIN prompts p ON p.id = r.prompt_id WHERE r.id = ?", [ranking_id]
    )


def get_dataset(store: Store, name: str) -> dict:
    """The dataset's row (id, name, description, k as annotators_per_prompt, guidelines and their version);
    NotFoundError listing the known names when there is none."""
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
