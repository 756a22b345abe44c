"""UltraFeedback (openbmb/UltraFeedback): one instruction, several completions, each rated by GPT-4 per aspect.

    {"source": "evol_instruct", "instruction": "...", "models": ["gpt-4", ...], "correct_answers": [...],
     "incorrect_answers": [...],
     "completions": [{"model": "gpt-4", "principle": "helpfulness", "custom_system_prompt": "...",
                      "response": "...", "critique": "...", "overall_score": 7.5, "fine-grained_score": 4.25,
                      "annotations": {"instruction_following": {"Rating": "5", "Rationale": "..."},
                                      "honesty": {"Rating": "4", "Rationale": "..."},
                                      "truthfulness": {"Type": ["0"], "Rationale": "...", "Rating": "5",
                                                       "Rationale For Rating": "..."},
                                      "helpfulness": {"Type": ["1", "2"], "Rationale": "...", "Rating": "N/A",
                                                      "Rationale For Rating": "..."}}}, ...]}

The instruction is the prompt (one user turn); each completion a generation whose model is its `model`, with
`fine-grained_score`, `principle`, `custom_system_prompt` (and any other field of the completion) as its metadata.
The completions form one ranking by `overall_score` (higher is better, equal scores tie), by the file's annotator,
whose source record is "ultrafeedback:" + the record's `id` when it has one, else the hash of the instruction.
Each completion's aspects become `ratings` rows of that ranking: value = the Rating ("N/A" is NULL, not
applicable), rationale = "Rationale For Rating" when present, else "Rationale", metadata = the aspect's other
fields (Type, the Rationale beside a Rationale For Rating). `overall_score` is kept as the aspect "overall_score"
with the completion's `critique` as its rationale. The same response twice in a record is one answer, at the
better rank, with the ratings of the completion that got it (nectar.one_per_text). A record with no completions
holds nothing to import (EMPTY_REASON). The record's other fields are the prompt's metadata.
"""

from __future__ import annotations

import math
from typing import Any

from db.hashing import text_hash
from db.importers.fields import Ctx, assistant_text, dumps, get, text, type_name
from db.importers.nectar import one_per_text
from db.importers.preference import ranking_batch
from db.staging import Batch

EMPTY_REASON = "a record with no completions: nothing to rank or rate"
OVERALL = "overall_score"
# keys of a line of the `ratings` export (db/export/sql.py): an aspect may not take one of these names
RESERVED = ("prompt", "response", "rationales", "annotator", OVERALL)
COMPLETION_KNOWN = ("response", "model", "annotations", "critique", OVERALL)
RATIONALE_KEYS = ("Rationale For Rating", "Rationale")


def rating_value(value: Any, fld: str, ctx: Ctx) -> float | None:
    """A rating: a number, or a string holding one ("4"); "N/A" (or null) is None, rated not applicable."""
    if value is None or (isinstance(value, str) and value.strip().upper() == "N/A"):
        return None
    number = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
        raise ctx.error(fld, f'expected a rating such as "5" or "N/A", got {value!r}')
    return float(number)


def ultrafeedback(rec: Any, ctx: Ctx) -> Batch:
    """One UltraFeedback record -> a prompt, its completions, one ranking by overall_score and the aspect ratings."""
    instruction = text(get(rec, "instruction", ctx), "instruction", ctx)
    if not instruction.strip():
        raise ctx.error("instruction", "the instruction says nothing; a prompt must say something")
    completions = get(rec, "completions", ctx)
    if not isinstance(completions, list):
        raise ctx.error("completions", f"expected a list of completions, got {type_name(completions)}")
    record_id = rec.get("id")
    if record_id is not None and (isinstance(record_id, bool) or not isinstance(record_id, str | int)):
        raise ctx.error("id", f"expected a string or a number, got {type_name(record_id)}")
    texts, scores, parts = [], [], []
    for i, c in enumerate(completions):
        fld = f"completions[{i}]"
        texts.append((f"{fld}.response", assistant_text(get(c, "response", ctx, where=fld), f"{fld}.response", ctx)))
        score = get(c, OVERALL, ctx, where=fld)
        if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
            raise ctx.error(f"{fld}.{OVERALL}", f"expected a number, got {score!r}")
        scores.append(float(score))
        parts.append(_completion(c, fld, ctx))
    if not completions:
        return Batch()
    order = sorted(set(scores), reverse=True)  # dense rank: equal scores tie, the next score ranks one below
    ranks = [order.index(s) + 1 for s in scores]
    texts, ranks, parts = one_per_text(texts, ranks, parts)
    source_record = "ultrafeedback:" + (str(record_id) if record_id is not None else text_hash(instruction))
    metadata = {k: v for k, v in rec.items() if k not in ("instruction", "completions", "id") and v is not None}
    batch = ranking_batch(
        [{"role": "user", "content": instruction}],
        texts,
        ranks,
        ctx,
        ctx.annotator,
        source_record=source_record,
        models=[p["model"] for p in parts],
        metadata=metadata or None,
    )
    rkey = batch.rankings[0]["ranking_key"]
    for g, p in zip(batch.generations, parts, strict=True):
        g["metadata"] = dumps(p["metadata"]) if p["metadata"] else None
        for aspect, (value, rationale, meta) in p["ratings"].items():
            batch.ratings.append(
                {
                    "ranking_key": rkey,
                    "gen_key": g["gen_key"],
                    "aspect": aspect,
                    "value": value,
                    "rationale": rationale,
                    "metadata": dumps(meta) if meta else None,
                }
            )
    return batch


def _completion(c: dict, fld: str, ctx: Ctx) -> dict:
    """A completion's model, generation metadata and ratings {aspect: (value, rationale, metadata)}, all checked."""
    model = get(c, "model", ctx, required=False, where=fld)
    critique = get(c, "critique", ctx, required=False, where=fld)
    ratings = {
        OVERALL: (
            float(c[OVERALL]),
            None if critique is None else text(critique, f"{fld}.critique", ctx, allow_empty=True),
            None,
        )
    }
    annotations = get(c, "annotations", ctx, required=False, where=fld)
    if annotations is not None and not isinstance(annotations, dict):
        raise ctx.error(f"{fld}.annotations", f"expected an object of aspects, got {type_name(annotations)}")
    for aspect, a in (annotations or {}).items():
        where = f"{fld}.annotations.{aspect}"
        if aspect in RESERVED or not aspect.strip():
            raise ctx.error(where, f"an aspect may not be named {aspect!r} (reserved: {', '.join(RESERVED)})")
        if isinstance(a, list) and len(a) == 1:  # the raw GitHub release wraps each aspect in a one-item list
            a = a[0]
        if not isinstance(a, dict):
            raise ctx.error(where, f"expected an object with Rating and Rationale, got {type_name(a)}")
        if "Rating" not in a:
            raise ctx.error(f"{where}.Rating", f"missing (the aspect has: {', '.join(sorted(a)) or 'none'})")
        value = rating_value(a["Rating"], f"{where}.Rating", ctx)
        key = next((k for k in RATIONALE_KEYS if a.get(k) is not None), None)
        rationale = None if key is None else text(a[key], f"{where}.{key}", ctx, allow_empty=True)
        meta = {k: v for k, v in a.items() if k not in ("Rating", key) and v is not None}
        ratings[aspect] = (value, rationale, meta)
    return {
        "model": None if model is None else text(model, f"{fld}.model", ctx),
        "metadata": {k: v for k, v in c.items() if k not in COMPLETION_KNOWN and v is not None},
        "ratings": ratings,
    }
