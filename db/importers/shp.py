"""Stanford Human Preferences (stanfordnlp/SHP): two top-level comments of one Reddit post, one preferred.

    {"post_id": "...", "domain": "askscience_train", "upvote_ratio": 0.98, "history": "the post",
     "c_root_id_A": "...", "c_root_id_B": "...", "created_at_utc_A": 1674000000, "created_at_utc_B": ...,
     "score_A": 52, "score_B": 14, "human_ref_A": "comment A", "human_ref_B": "comment B",
     "labels": 1, "seconds_difference": 3600.0, "score_ratio": 3.71}

The post (`history`) is the prompt, the two comments its answers; `labels` 1 prefers A, 0 prefers B: the
preferred comment ranks 1, the other 2, one two-answer ranking per record by the file's annotator. A post has
many records (one per pair of its comments), so a ranking's source record is
"shp:<post_id>:<c_root_id_A>:<c_root_id_B>": every pair of a post is a ranking of its own, the same pair twice
is one. The post's fields (post_id, domain, upvote_ratio) are the prompt's metadata; each comment keeps its
c_root_id, created_at_utc and score as its generation's metadata; the pair's score_ratio (how strongly the
preferred comment won: the margin) and seconds_difference are the ranking's details (ranking_notes.metadata).
"""

from __future__ import annotations

from typing import Any

from db.importers.fields import Ctx, assistant_text, dumps, get, text, type_name
from db.importers.preference import ranking_batch
from db.staging import Batch

POST = ("post_id", "domain", "upvote_ratio")
COMMENT = ("c_root_id", "created_at_utc", "score")
PAIR = ("score_ratio", "seconds_difference")
LABELS = {1: [1, 2], 0: [2, 1]}


def shp(rec: Any, ctx: Ctx) -> Batch:
    post_id = text(get(rec, "post_id", ctx), "post_id", ctx)
    prompt = text(get(rec, "history", ctx), "history", ctx)
    if not prompt.strip():
        raise ctx.error("history", "the post says nothing; a prompt must say something")
    label = get(rec, "labels", ctx)
    if isinstance(label, float) and label.is_integer():  # some exports write labels as 1.0
        label = int(label)
    if isinstance(label, bool) or label not in LABELS:
        raise ctx.error("labels", f"expected 1 (A preferred) or 0 (B preferred), got {label!r}")
    answers, ids, metas = [], [], []
    for side in ("A", "B"):
        fld = f"human_ref_{side}"
        answers.append((fld, assistant_text(get(rec, fld, ctx), fld, ctx)))
        ids.append(text(get(rec, f"c_root_id_{side}", ctx), f"c_root_id_{side}", ctx))
        score = get(rec, f"score_{side}", ctx)
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise ctx.error(f"score_{side}", f"expected a number, got {type_name(score)}")
        metas.append({k: rec.get(f"{k}_{side}") for k in COMMENT if rec.get(f"{k}_{side}") is not None})
    metadata = {k: rec[k] for k in POST if rec.get(k) is not None}
    batch = ranking_batch(
        [{"role": "user", "content": prompt}],
        answers,
        LABELS[label],
        ctx,
        None,
        source_record=f"shp:{post_id}:{ids[0]}:{ids[1]}",
        metadata=metadata,
    )
    for g, meta in zip(batch.generations, metas, strict=True):
        g["metadata"] = dumps(meta)
    pair = {k: rec[k] for k in PAIR if rec.get(k) is not None}
    if pair:
        batch.rankings[0]["metadata"] = dumps(pair)
    return batch
