"""OpenAssistant message trees (the oasst1/oasst2 "trees" export: one tree per line).

    {"message_tree_id": "...", "prompt": {"message_id", "role": "prompter", "text", "deleted", "rank",
                                          "replies": [{"role": "assistant", "text", "rank": 0, ...}, ...]}}

Every message with two or more (not deleted) assistant replies becomes a prompt: the whole conversation up to
and including it (prompter -> user, assistant -> assistant). Its replies become generations (kind 'imported').
OpenAssistant ranks siblings 0 = best, so rank r is stored as r + 1; the ranks come from the crowd's merged
votes, so they form one ranking by a consensus annotator ("oasst-consensus", kind 'consensus'). Replies with
no rank stay generations without a rank; fewer than two ranked replies give no ranking. A ranking's source record
is "oasst:<message_id>" of the message its replies answer: trees that open with the same message keep a ranking
each, and a tree repeated in the file (even with other metadata) is one ranking, the repeat counted as merged.
"""

from __future__ import annotations

from typing import Any

from db.importers.fields import Ctx, generation_row, get, prompt_row, ranking_record, text, type_name
from db.staging import Batch

CONSENSUS_ANNOTATOR = "oasst-consensus"
ROLES = {"prompter": "user", "assistant": "assistant"}


def oasst(rec: Any, ctx: Ctx) -> Batch:
    if isinstance(rec, dict) and "prompt" in rec:
        root, where = get(rec, "prompt", ctx), "prompt"
    elif isinstance(rec, dict) and "replies" in rec:  # a bare root message
        root, where = rec, ""
    else:
        raise ctx.error(
            "prompt",
            f"expected an oasst tree with a 'prompt' message, got {type_name(rec)}"
            f"{' with keys ' + ', '.join(rec) if isinstance(rec, dict) else ''}",
        )
    batch = Batch()
    stack = [(root, where or "prompt", [])]
    n_rankings = 0
    while stack:
        msg, fld, history = stack.pop()
        if not isinstance(msg, dict):
            raise ctx.error(fld, f"expected a message object, got {type_name(msg)}")
        if msg.get("deleted"):
            continue
        role = get(msg, "role", ctx, where=fld)
        if role not in ROLES:
            raise ctx.error(f"{fld}.role", f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        # an assistant reply may be empty (an answer all the same); a prompter message must say something
        content = text(get(msg, "text", ctx, where=fld), f"{fld}.text", ctx, allow_empty=role == "assistant")
        convo = [*history, {"role": ROLES[role], "content": content}]
        replies = msg.get("replies") or []
        if not isinstance(replies, list):
            raise ctx.error(f"{fld}.replies", f"expected a list of messages, got {type_name(replies)}")
        answers = []
        for i, r in enumerate(replies):
            rf = f"{fld}.replies[{i}]"
            if isinstance(r, dict) and not r.get("deleted") and r.get("role") == "assistant":
                rank = r.get("rank")
                if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 0):
                    raise ctx.error(f"{rf}.rank", f"expected a rank 0 (best) or higher, or null, got {rank!r}")
                answers.append((text(get(r, "text", ctx, where=rf), f"{rf}.text", ctx, allow_empty=True), rank, r))
            stack.append((r, rf, convo))
        if len(answers) >= 2 and convo[-1]["role"] == "user":
            n_rankings += _add_prompt(batch, convo, msg, answers, ctx, n_rankings)
    return batch


def _add_prompt(batch: Batch, convo: list[dict], msg: dict, answers: list, ctx: Ctx, n: int) -> int:
    p = prompt_row(convo, ctx, external_id=msg.get("message_id"))
    batch.prompts.append(p)
    best: dict[str, int] = {}  # the same text twice among siblings is one answer: keep its better rank
    for answer, rank, reply in answers:
        g = generation_row(
            p["key"],
            answer,
            "imported",
            model=reply.get("model_name"),
            metadata={k: reply[k] for k in ("message_id", "lang") if reply.get(k) is not None},
        )
        batch.generations.append(g)
        if rank is not None:
            best[g["gen_key"]] = min(rank + 1, best.get(g["gen_key"], rank + 1))
    if len(best) < 2:
        return 0
    key = f"{ctx.line}:{n}"
    # the prompt message's id names the ranking (ids are UUIDs, unique across trees): two trees that open with the
    # same text are two rankings, and the same tree twice is one
    mid = msg.get("message_id")
    source_record = f"oasst:{mid}" if isinstance(mid, str) and mid else ranking_record(p["key"], list(best.items()))
    batch.rankings.append(
        {
            "ranking_key": key,
            "prompt_key": p["key"],
            "annotator": CONSENSUS_ANNOTATOR,
            "user_kind": "consensus",
            "status": "submitted",
            "source": "consensus",
            "source_record": source_record,
        }
    )
    batch.items.extend(
        {"ranking_key": key, "gen_key": gk, "rank": rank, "position": i} for i, (gk, rank) in enumerate(best.items())
    )
    return 1
