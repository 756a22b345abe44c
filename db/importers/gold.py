"""Gold items from a file: a `ranked` record with `"gold": true` (its ranks are the known order) or `"gold": "best"`
(only its rank-1 answer is known to be best) makes its prompt a gold item (db/gold.py) instead of a ranking.

The converter stores the prompt and answers as usual and leaves the known order in ctx.state["gold"]; import_file
writes them, in the import's transaction, after the staged rows (`commit_gold`). A prompt that is already gold
keeps its stored order.
"""

from __future__ import annotations

import pyarrow as pa

from db.importers.fields import Ctx

SCHEMA = pa.schema(
    [("prompt_key", pa.string()), ("gen_key", pa.string()), ("rank", pa.int32()), ("kind", pa.string())]
)
KINDS = {True: "order", "order": "order", "best": "best"}


def remember(ctx: Ctx, prompt_key: str, gen_keys: list[str], ranks: list[int], kind: str) -> None:
    """Keep a gold record's known order for commit_gold (for kind 'best': rank 1 for the best, 2 for the rest)."""
    if kind == "best":
        ranks = [1 if r == 1 else 2 for r in ranks]
    rows = ctx.state.setdefault("gold", [])
    rows.extend(
        {"prompt_key": prompt_key, "gen_key": g, "rank": r, "kind": kind} for g, r in zip(gen_keys, ranks, strict=True)
    )


def table(ctx: Ctx) -> pa.Table | None:
    """The remembered gold rows as the stage_gold relation, or None when the file had none."""
    rows = ctx.state.get("gold")
    return pa.Table.from_pylist(rows, schema=SCHEMA) if rows else None


def commit_gold(con, dataset_id: int, created_by: str) -> int:
    """Make the prompts of stage_gold gold items with their known order; returns how many became gold."""
    added = con.execute(
        """INSERT INTO gold_items (prompt_id, kind, created_by)
           SELECT p.id, any_value(s.kind), ? FROM stage_gold s
           JOIN prompts p ON p.dataset_id = ? AND p.content_hash = s.prompt_key
           WHERE p.id NOT IN (SELECT prompt_id FROM gold_items) GROUP BY p.id
           RETURNING prompt_id""",
        [created_by, dataset_id],
    ).fetchall()
    ids = [r[0] for r in added]
    if ids:
        con.execute(
            """INSERT INTO gold_answers (prompt_id, generation_id, rank)
               SELECT DISTINCT ON (p.id, g.id) p.id, g.id, s.rank FROM stage_gold s
               JOIN prompts p ON p.dataset_id = ? AND p.content_hash = s.prompt_key
               JOIN generations g ON g.prompt_id = p.id AND g.content_hash = s.gen_key
               WHERE p.id IN (SELECT unnest(?::BIGINT[]))""",
            [dataset_id, ids],
        )
        con.execute("DELETE FROM queue_open WHERE prompt_id IN (SELECT unnest(?::BIGINT[]))", [ids])
    return len(ids)
