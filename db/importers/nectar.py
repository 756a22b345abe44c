"""Nectar (berkeley-nest/Nectar): an HH-style prompt and K answers (often 7) ranked by GPT-4.

    {"prompt": "\\n\\nHuman: ...\\n\\nAssistant:", "answers": [{"answer": "...", "model": "gpt-4", "rank": 1}, ...],
     "turns": 1, "num_responses": 7, "source": ["sharegpt"], "good_natured": true}

The prompt is HH-RLHF text (possibly several turns) parsed as `implicit-preference` parses it; the trailing
"\\n\\nAssistant:" cue is the turn the answers fill, so it is dropped. Each answer becomes a generation (kind
'imported') whose model is its `model`; the answers form one ranking by `rank` (1 is best, equal ranks tie), by
the file's annotator as for `ranked`. The same text from two models is one answer at the better rank (see
one_per_text). The record's other fields (turns, num_responses, source, good_natured, ...)
are kept as the prompt's metadata.
"""

from __future__ import annotations

from typing import Any

from db.importers.fields import Ctx, assistant_text, check_context, get, text, type_name
from db.importers.preference import conversation, ranking_batch
from db.staging import Batch

KNOWN = ("prompt", "answers")


def nectar(rec: Any, ctx: Ctx) -> Batch:
    msgs = conversation(get(rec, "prompt", ctx), "prompt", ctx)
    if msgs[-1]["role"] == "assistant":
        if msgs[-1]["content"]:
            raise ctx.error("prompt", "the prompt ends with an assistant answer; expected it to end with 'Assistant:'")
        msgs = msgs[:-1]
    if not msgs:
        raise ctx.error("prompt", "the prompt has no Human turn")
    check_context(msgs, "prompt", ctx)
    answers = get(rec, "answers", ctx)
    if not isinstance(answers, list) or len(answers) < 2:
        got = f"{len(answers)}" if isinstance(answers, list) else type_name(answers)
        raise ctx.error("answers", f"expected a list of at least 2 answers, got {got}")
    texts, ranks, models = [], [], []
    for i, a in enumerate(answers):
        fld = f"answers[{i}]"
        texts.append((f"{fld}.answer", assistant_text(get(a, "answer", ctx, where=fld), f"{fld}.answer", ctx)))
        model = get(a, "model", ctx, required=False, where=fld)
        models.append(None if model is None else text(model, f"{fld}.model", ctx))
        rank = get(a, "rank", ctx, where=fld)
        if isinstance(rank, float) and rank.is_integer():  # some exports write ranks as 1.0
            rank = int(rank)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= len(answers):
            raise ctx.error(f"{fld}.rank", f"expected an integer rank from 1 (best) to {len(answers)}, got {rank!r}")
        ranks.append(rank)
    texts, ranks, models = one_per_text(texts, ranks, models)
    if len(texts) < 2:
        raise ctx.error("answers", "every answer has the same text; expected at least 2 different answers to rank")
    metadata = {k: v for k, v in rec.items() if k not in KNOWN and v is not None}
    return ranking_batch(msgs, texts, ranks, ctx, None, models=models, metadata=metadata or None)


def one_per_text(texts: list, ranks: list[int], extra: list) -> tuple[list, list[int], list]:
    """Two models may write the same text (often both an empty reply): it is one answer of the prompt, ranked at
    the better of its ranks. `texts` are (field, text); `extra[i]` (answer i's model, or whatever else belongs to
    it) is kept from the answer that got that rank. Used by nectar and ultrafeedback."""
    best: dict[str, int] = {}
    for i, ((_, answer), rank) in enumerate(zip(texts, ranks, strict=True)):
        if answer not in best or rank < ranks[best[answer]]:
            best[answer] = i
    keep = sorted(best.values())
    return [texts[i] for i in keep], [ranks[i] for i in keep], [extra[i] for i in keep]
