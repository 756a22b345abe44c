"""Preference formats: explicit pairs, implicit (HH-RLHF) pairs and K-way rankings.

    preference           {"prompt": "..." | [msgs], "chosen": "..." | [assistant msg], "rejected": ...,
                          "is_tie"?: false}
    implicit-preference  {"chosen": "\\n\\nHuman: q\\n\\nAssistant: a", "rejected": "...same prefix..."}
                         (or two message lists sharing a prefix); the prompt is the shared prefix
    ranked               {"prompt": ..., "responses": ["...", ...], "ranks": [2, 1, ...], "annotator"?: "..."}
                         ranks[i] is the rank of responses[i]: 1 is best, equal numbers are ties

Each record becomes a prompt, its answers (generation kind 'imported') and one ranking (a pair is a ranking
of two). Who ranked: the record's "annotator", else one named after the file ("imported:<stem>"). The same
prompt ranked again further down the file without an annotator is a second ranking by "<name>#2" (unnamed
rankers of one prompt are taken to be different people); a named annotator ranking a prompt twice is an
error. A ranking's source record is the hash of its prompt and ranked answers (fields.ranking_record).

A `preference` prompt string written the way our `trl` export writes it is read back as the conversation it
came from, so a `trl` file re-imports as the pairs it was made of. The rule is exact: the string ends with
"\\n\\nAssistant:", contains "\\n\\nHuman: ", its first turn marker is "\\n\\nHuman: " (text before it is a system
message), every "\\n\\nHuman:" is followed by one space and every "\\n\\nAssistant:" but the last by one space
and the answer. Then each turn loses exactly that one space, and so do chosen and rejected strings (the export
starts a non-empty answer with one space). Any other string, "Human:" without the blank line before it included,
stays one user message as written. A turn that itself contains "\\n\\nHuman: " cannot be told apart from a new
turn: such prompts round-trip through `trl-messages`, not `trl`. `is_tie: true` (what `--ties keep` writes)
makes the pair a tie: both answers rank 1.
"""

from __future__ import annotations

import re
from typing import Any

from db.hashing import text_hash
from db.importers import gold as gold_import
from db.importers.fields import (
    Ctx,
    assistant_text,
    check_context,
    generation_row,
    get,
    messages,
    prompt_messages,
    prompt_row,
    ranking_record,
    text,
    type_name,
)
from db.staging import Batch

_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ ]?")
_HH_MARK = re.compile(r"\n\n(Human|Assistant):")
_HH_CUE = "\n\nAssistant:"


def ranking_batch(
    msgs: list[dict],
    answers: list[tuple[str, str]],
    ranks: list[int],
    ctx: Ctx,
    annotator: str | None,
    *,
    ranking_key: str | None = None,
    source_record: str | None = None,
    models: list[str | None] | None = None,
    all_bad: bool = False,
    metadata: dict | None = None,
) -> Batch:
    """A prompt, its answers [(field, text)] and one ranking of them, after every check has passed.

    `source_record` names the record the ranking came from (a format's own id where it has one); by default it is
    the hash of the prompt and the ranked answers (fields.ranking_record), so the same ranking twice is one. With a
    source record of its own, a named annotator may rank one prompt in several records (arena battles: a ranking is
    one per annotator per record). `models[i]` is the model that wrote answer i; `metadata` goes on the prompt.
    """
    seen: dict[str, str] = {}
    for fld, answer in answers:
        if answer in seen:
            raise ctx.error(fld, f"the same text as {seen[answer]}; every answer of a ranking must differ")
        seen[answer] = fld
    batch = Batch()
    p = prompt_row(msgs, ctx, metadata=metadata)
    batch.prompts.append(p)
    name = annotator if source_record and annotator is not None else _annotator(p["key"], annotator, ctx)
    rkey = ranking_key or str(ctx.line)
    gen_keys = [text_hash(answer) for _, answer in answers]
    batch.rankings.append(
        {
            "ranking_key": rkey,
            "prompt_key": p["key"],
            "annotator": name,
            "user_kind": "imported",
            "status": "submitted",
            "source": "import",
            "all_bad": all_bad,
            "source_record": source_record or ranking_record(p["key"], list(zip(gen_keys, ranks, strict=True))),
        }
    )
    for position, ((_, answer), rank) in enumerate(zip(answers, ranks, strict=True)):
        g = generation_row(p["key"], answer, "imported", model=models[position] if models else None)
        batch.generations.append(g)
        batch.items.append({"ranking_key": rkey, "gen_key": g["gen_key"], "rank": rank, "position": position})
    return batch


def _annotator(prompt_key: str, annotator: str | None, ctx: Ctx) -> str:
    if annotator is not None:
        named = ctx.state.setdefault("named", {})
        if (prompt_key, annotator) in named:
            raise ctx.error(
                "annotator",
                f"{annotator!r} already ranked this prompt on line "
                f"{named[prompt_key, annotator]}; one ranking per annotator per prompt",
            )
        named[prompt_key, annotator] = ctx.line
        return annotator
    counts = ctx.state.setdefault("unnamed", {})
    k = counts.get(prompt_key, 0) + 1
    counts[prompt_key] = k
    return ctx.annotator if k == 1 else f"{ctx.annotator}#{k}"


def _optional_annotator(rec: dict, ctx: Ctx) -> str | None:
    value = get(rec, "annotator", ctx, required=False)
    return None if value is None else text(value, "annotator", ctx)


def hh_prompt(value: str) -> list[dict] | None:
    """The messages of a prompt string in the `trl` export's HH layout (see the module docstring), else None.

    "Sys\\n\\nHuman: a\\n\\nAssistant: b\\n\\nHuman: c\\n\\nAssistant:" -> system "Sys", user "a", assistant "b",
    user "c". A string that departs from the layout anywhere is not HH text: the caller keeps it as it is.
    """
    if not value.endswith(_HH_CUE) or "\n\nHuman: " not in value:
        return None
    parts = _HH_MARK.split(value[: -len(_HH_CUE)])
    system, turns = parts[0], list(zip(parts[1::2], parts[2::2], strict=True))
    if turns[0][0] != "Human":
        return None
    msgs = [{"role": "system", "content": system}] if system else []
    for role, body in turns:
        if role == "Assistant" and body == "":  # an empty answer is written without the space
            msgs.append({"role": "assistant", "content": ""})
        elif body.startswith(" "):
            msgs.append({"role": "user" if role == "Human" else "assistant", "content": body[1:]})
        else:
            return None
    if msgs[-1]["role"] != "user" or any(m["content"] == "" for m in msgs if m["role"] == "user"):
        return None  # not a prompt the export writes (it ends on a non-empty question): keep the text as it is
    return msgs


def preference(rec: Any, ctx: Ctx) -> Batch:
    raw = get(rec, "prompt", ctx)
    hh = hh_prompt(raw) if isinstance(raw, str) else None
    # an HH prompt may hold an empty earlier answer, as a stored prompt may (implicit-preference prefixes)
    msgs = prompt_messages(raw, "prompt", ctx) if hh is None else messages(hh, "prompt", ctx, empty_answers=True)
    answers = []
    for fld in ("chosen", "rejected"):
        value = get(rec, fld, ctx)
        answer = assistant_text(value, fld, ctx)
        if hh is not None and isinstance(value, str) and answer.startswith(" "):
            answer = answer[1:]  # the one space the HH layout puts between the cue and the answer
        answers.append((fld, answer))
    tie = get(rec, "is_tie", ctx, required=False)
    if tie is not None and not isinstance(tie, bool):
        raise ctx.error("is_tie", f"expected true or false, got {type_name(tie)}")
    return ranking_batch(msgs, answers, [1, 1] if tie else [1, 2], ctx, _optional_annotator(rec, ctx))


def conversation(value: Any, fld: str, ctx: Ctx) -> list[dict]:
    """A conversation given as HH-RLHF text ('\\n\\nHuman: ...\\n\\nAssistant: ...') or as a message list."""
    if isinstance(value, list):
        return messages(value, fld, ctx, empty_answers=True)
    raw = text(value, fld, ctx)
    parts = _HH_TURN.split(raw)
    if len(parts) < 3 or parts[0].strip():
        raise ctx.error(fld, "expected HH-RLHF text ('\\n\\nHuman: ...\\n\\nAssistant: ...') or a message list")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [
        {
            "role": roles[parts[i]],
            "content": text(parts[i + 1].strip(), fld, ctx, allow_empty=parts[i] == "Assistant"),
        }
        for i in range(1, len(parts), 2)
    ]


def implicit_preference(rec: Any, ctx: Ctx) -> Batch:
    chosen = conversation(get(rec, "chosen", ctx), "chosen", ctx)
    rejected = conversation(get(rec, "rejected", ctx), "rejected", ctx)
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    prompt, tails = chosen[:n], {"chosen": chosen[n:], "rejected": rejected[n:]}
    for fld, tail in tails.items():
        if len(tail) != 1 or tail[0]["role"] != "assistant":
            raise ctx.error(
                fld,
                "expected chosen and rejected to share every turn but the final assistant answer "
                f"(after the shared prefix, {fld} has {len(tail)} turns)",
            )
    if not prompt:
        raise ctx.error("chosen", "chosen and rejected share no prefix, so there is no prompt")
    check_context(prompt, "chosen", ctx)
    return ranking_batch(
        prompt, [(f, t[0]["content"]) for f, t in tails.items()], [1, 2], ctx, _optional_annotator(rec, ctx)
    )


def ranked(rec: Any, ctx: Ctx) -> Batch:
    msgs = prompt_messages(get(rec, "prompt", ctx), "prompt", ctx)
    responses = get(rec, "responses", ctx)
    if not isinstance(responses, list) or len(responses) < 2:
        got = f"{len(responses)}" if isinstance(responses, list) else type_name(responses)
        raise ctx.error("responses", f"expected a list of at least 2 answers, got {got}")
    answers = [(f"responses[{i}]", assistant_text(r, f"responses[{i}]", ctx)) for i, r in enumerate(responses)]
    ranks = get(rec, "ranks", ctx)
    if not isinstance(ranks, list):
        raise ctx.error("ranks", f"expected a list of integers, got {type_name(ranks)}")
    if len(ranks) != len(responses):
        raise ctx.error("ranks", f"{len(ranks)} ranks for {len(responses)} responses; expected one rank per response")
    for i, r in enumerate(ranks):
        if isinstance(r, bool) or not isinstance(r, int):
            raise ctx.error(f"ranks[{i}]", f"expected an integer rank (1 = best), got {r!r}")
        if not 1 <= r <= len(responses):
            raise ctx.error(f"ranks[{i}]", f"rank {r} is out of range; expected 1 (best) to {len(responses)}")
    gold = get(rec, "gold", ctx, required=False)
    if gold is None or gold is False:
        return ranking_batch(msgs, answers, ranks, ctx, _optional_annotator(rec, ctx))
    if gold not in gold_import.KINDS or isinstance(gold, int) and not isinstance(gold, bool):
        raise ctx.error("gold", f'expected true (the ranks are the known order) or "best", got {gold!r}')
    kind = gold_import.KINDS[gold]
    if kind == "best" and ranks.count(1) != 1:
        raise ctx.error("ranks", 'a "best" gold record ranks exactly one answer 1')
    if kind == "order" and len(set(ranks)) < 2:
        raise ctx.error("ranks", "a gold order must put at least one answer above another")
    batch = ranking_batch(msgs, answers, ranks, ctx, None)
    gold_import.remember(ctx, batch.prompts[0]["key"], [g["gen_key"] for g in batch.generations], ranks, kind)
    batch.rankings, batch.items = [], []  # a known order is a gold item, not an annotator's ranking
    return batch
