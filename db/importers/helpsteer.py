"""HelpSteer (nvidia/HelpSteer2, nvidia/HelpSteer): one response per row, with 0-4 scores per attribute.

    {"prompt": "...", "response": "...", "helpfulness": 3, "correctness": 3, "coherence": 4, "complexity": 2,
     "verbosity": 1}

also read with an `annotator` (who rated; default: the file's annotator), a `rationales` object {aspect: why}
and a `model` (the generation's model), which is what `preflab export --format ratings` writes. `prompt` is a
string (one user turn) or a message list ending on a user turn; `response` a string (it may be empty).

Every key but prompt, response, annotator, rationales and model whose value is a number is an aspect (null: rated
"not applicable"); helpfulness, correctness, coherence, complexity and verbosity, when present, must be numbers or
null. Other keys (strings, lists, ...) are kept as the generation's metadata.

The rows of one prompt and annotator, wherever they are in the file, become ONE ranking by helpfulness (higher is
better, equal scores tie; a response without a helpfulness value ranks below every rated one) whose source record
is the hash of the prompt and the ranked answers, as for `ranked`. Records arrive one at a time, so each row stages
its prompt and answer (stamped with its record, so the import's accounting sees it) and remembers its ratings in
ctx.state; `finish` emits the rankings and ratings once the whole file is read, each ranking stamped with the first
record of its group. A prompt with one response is a one-answer ranking: it keeps the ratings and gives no pairs.
The same response twice for one prompt and annotator is one answer with the ratings of its first row.
"""

from __future__ import annotations

from typing import Any

from db.importers.fields import (
    Ctx,
    assistant_text,
    generation_row,
    get,
    prompt_messages,
    prompt_row,
    ranking_record,
    text,
    type_name,
)
from db.importers.ultrafeedback import rating_value
from db.staging import Batch

ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
RANK_BY = "helpfulness"
STRUCTURE = ("prompt", "response", "annotator", "rationales", "model")


def helpsteer(rec: Any, ctx: Ctx) -> Batch:
    """One HelpSteer row -> its prompt and answer now; its ranking and ratings later, from `finish`."""
    msgs = prompt_messages(get(rec, "prompt", ctx), "prompt", ctx)
    response = assistant_text(get(rec, "response", ctx), "response", ctx)
    annotator = get(rec, "annotator", ctx, required=False)
    annotator = ctx.annotator if annotator is None else text(annotator, "annotator", ctx)
    model = get(rec, "model", ctx, required=False)
    model = None if model is None else text(model, "model", ctx)
    ratings: dict[str, float | None] = {}
    metadata = {}
    for key, value in rec.items():
        if key in STRUCTURE:
            continue
        if key in ATTRIBUTES or value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            if isinstance(value, str):  # "3" from a CSV-minded export is still a mistake worth naming
                raise ctx.error(key, f"expected a number (or null: not applicable), got {value!r}")
            ratings[key] = rating_value(value, key, ctx)
        else:
            metadata[key] = value
    rationales = get(rec, "rationales", ctx, required=False)
    if rationales is not None and not isinstance(rationales, dict):
        raise ctx.error("rationales", f"expected an object {{aspect: text}}, got {type_name(rationales)}")
    why = {}
    for aspect, value in (rationales or {}).items():
        if aspect not in ratings:
            raise ctx.error(f"rationales.{aspect}", f"a rationale for {aspect!r}, which this row does not rate")
        if value is not None:
            why[aspect] = text(value, f"rationales.{aspect}", ctx, allow_empty=True)

    batch = Batch()
    p = prompt_row(msgs, ctx)
    g = generation_row(p["key"], response, "imported", model=model, metadata=metadata or None)
    batch.prompts.append(p)
    batch.generations.append(g)
    groups = ctx.state.setdefault("helpsteer", {})
    group = groups.setdefault((p["key"], annotator), {"record": ctx.state.get("record"), "answers": {}})
    group["answers"].setdefault(g["gen_key"], {a: (v, why.get(a)) for a, v in ratings.items()})
    return batch


def finish(ctx: Ctx) -> Batch:
    """The rankings and ratings of the rows `helpsteer` read: one ranking per prompt and annotator."""
    batch = Batch()
    for n, ((prompt_key, annotator), group) in enumerate(ctx.state.get("helpsteer", {}).items()):
        answers = group["answers"]
        scores = [r[RANK_BY][0] if RANK_BY in r and r[RANK_BY][0] is not None else None for r in answers.values()]
        order = sorted({s for s in scores if s is not None}, reverse=True)
        ranks = [len(order) + 1 if s is None else order.index(s) + 1 for s in scores]
        rkey = f"helpsteer:{n}"
        batch.rankings.append(
            {
                "ranking_key": rkey,
                "prompt_key": prompt_key,
                "annotator": annotator,
                "user_kind": "imported",
                "status": "submitted",
                "source": "import",
                "all_bad": False,
                "source_record": ranking_record(prompt_key, list(zip(answers, ranks, strict=True))),
                "record": group["record"],
            }
        )
        for position, ((gen_key, ratings), rank) in enumerate(zip(answers.items(), ranks, strict=True)):
            batch.items.append({"ranking_key": rkey, "gen_key": gen_key, "rank": rank, "position": position})
            for aspect, (value, rationale) in ratings.items():
                batch.ratings.append(
                    {"ranking_key": rkey, "gen_key": gen_key, "aspect": aspect, "value": value, "rationale": rationale}
                )
    return batch
