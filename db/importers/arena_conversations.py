"""Chatbot Arena's public conversations (lmsys/chatbot_arena_conversations): one battle per record.

    {"question_id": "...", "model_a": "...", "model_b": "...", "winner": "model_a" | "model_b" | "tie" |
     "tie (bothbad)", "judge": "arena_user_...", "conversation_a": [{"role": "user", "content": ...},
     {"role": "assistant", "content": ...}, ...], "conversation_b": [...], "turn": 1, "language": "...",
     "tstamp": ..., "anony": true, ...}

Each battle is one two-answer ranking by its judge (the annotator, named as the record gives it, as `ranked`'s
`annotator`): the winner ranks 1, the other 2; both kinds of tie are kept as ties (equal ranks) and
"tie (bothbad)" also marks the ranking all_bad. The prompt is the conversation before the last assistant turn;
each conversation's last turn is its model's answer, stored with `model_a` / `model_b` as its model. Both
conversations must hold the same user turns (else the record is refused, naming conversation_b). A multi-turn
battle whose earlier answers differ ranks answers that continue different conversations: there is no one
prompt to rank them under, and two answers with the same text are one answer with nothing to rank it against:
such a record is counted as holding nothing to import (EMPTY_REASON). The ranking's
source record is "arena:<question_id>:<model_a>:<model_b>:<judge>[:<tstamp>]", one per battle: several battles
on one question are several rankings, the same battle twice is one. The record's other fields (question_id,
language, turn, tstamp, anony, ...) are kept as the prompt's metadata.
"""

from __future__ import annotations

from typing import Any

from db.importers.fields import Ctx, get, messages, text
from db.importers.preference import ranking_batch
from db.staging import Batch

WINNERS = {"model_a": [1, 2], "model_b": [2, 1], "tie": [1, 1], "tie (bothbad)": [1, 1]}
EMPTY_REASON = (
    "a battle whose two answers cannot be ranked under one prompt: a multi-turn battle whose conversations differ "
    "before the last answer (the answers continue different conversations), or two answers with the same text"
)
KNOWN = ("model_a", "model_b", "winner", "judge", "conversation_a", "conversation_b")


def arena_conversations(rec: Any, ctx: Ctx) -> Batch:
    qid = get(rec, "question_id", ctx)
    if not isinstance(qid, str | int) or isinstance(qid, bool) or qid == "":
        raise ctx.error("question_id", f"expected a non-empty string or number, got {qid!r}")
    models = [text(get(rec, f, ctx), f, ctx) for f in ("model_a", "model_b")]
    winner = get(rec, "winner", ctx)
    if winner not in WINNERS:
        raise ctx.error("winner", f"unknown winner {winner!r}; expected one of {', '.join(map(repr, WINNERS))}")
    judge = text(get(rec, "judge", ctx), "judge", ctx)
    convos = {f: messages(get(rec, f, ctx), f, ctx, empty_answers=True) for f in ("conversation_a", "conversation_b")}
    for f, convo in convos.items():
        if convo[-1]["role"] != "assistant":
            raise ctx.error(
                f, f"the conversation must end with the model's answer, it ends with {convo[-1]['role']!r}"
            )
        if len(convo) < 2:
            raise ctx.error(f, "expected at least a user turn and the model's answer")
    a, b = convos["conversation_a"], convos["conversation_b"]
    users_a = [m for m in a if m["role"] != "assistant"]
    users_b = [m for m in b if m["role"] != "assistant"]
    if users_a != users_b:
        raise ctx.error(
            "conversation_b",
            "its user turns differ from conversation_a's; both models of a battle answer the same user turns",
        )
    if a[:-1] != b[:-1] or a[-1] == b[-1]:  # see the module docstring
        return Batch()
    tstamp = rec.get("tstamp")
    source_record = f"arena:{qid}:{models[0]}:{models[1]}:{judge}" + ("" if tstamp is None else f":{tstamp}")
    metadata = {k: v for k, v in rec.items() if k not in KNOWN and v is not None}
    return ranking_batch(
        a[:-1],
        [("conversation_a", a[-1]["content"]), ("conversation_b", b[-1]["content"])],
        WINNERS[winner],
        ctx,
        judge,
        source_record=source_record,
        models=models,
        all_bad=winner == "tie (bothbad)",
        metadata=metadata or None,
    )
