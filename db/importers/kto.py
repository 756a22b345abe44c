"""TRL's unpaired preference format (KTO): one answer to a prompt and whether it is desirable.

    standard        {"prompt": "Hola, ¿qué tal?", "completion": "Muy bien.", "label": true}
                    {"prompt": "\\n\\nHuman: 你好\\n\\nAssistant:", "completion": " 你好！", "label": false}
    conversational  {"prompt": [{"role": "user", "content": "..."}],
                     "completion": [{"role": "assistant", "content": "..."}], "label": true}

Each record is binary feedback, stored as such (a `feedback` row, never a pair): the prompt, the answer
(generation kind 'imported') and the label by the file's annotator. A string prompt in HH style (the way
`preflab export --format kto` writes it: "\\n\\nHuman: ...\\n\\nAssistant:", text before the first Human turn
being a system message) is read back into messages, and the completion's one leading space (the separator
of that style) is dropped; any other string prompt is one user turn, kept as it is. An empty completion is
an answer. `label` is true or false (1 or 0 is read as the same). A record's source record is
"kto:<hash of prompt, answer and label>", so the same line twice is one feedback row and a re-import adds
nothing, while the same answer labelled true on one line and false on another keeps both.
"""

from __future__ import annotations

import re
from typing import Any

from db.hashing import text_hash
from db.importers.fields import (
    Ctx,
    assistant_text,
    check_context,
    generation_row,
    get,
    prompt_messages,
    prompt_row,
    text,
    type_name,
)
from db.importers.preference import conversation
from db.staging import Batch

_FIRST_HUMAN = re.compile(r"(?:^|\n\n)Human:")
_HH_END = re.compile(r"\n\nAssistant:[ ]?\Z")


def kto(rec: Any, ctx: Ctx) -> Batch:
    """One feedback row (with its prompt and answer) from a KTO record."""
    raw = get(rec, "prompt", ctx)
    hh = isinstance(raw, str) and is_hh_prompt(raw)
    msgs = hh_prompt(raw, ctx) if hh else prompt_messages(raw, "prompt", ctx)
    answer = assistant_text(get(rec, "completion", ctx), "completion", ctx)
    if hh and answer.startswith(" "):  # HH style separates the cue and the answer with one space
        answer = answer[1:]
    label = _label(get(rec, "label", ctx), ctx)
    p = prompt_row(msgs, ctx)
    g = generation_row(p["key"], answer, "imported")
    batch = Batch(prompts=[p], generations=[g])
    batch.feedback.append(
        {
            "prompt_key": p["key"],
            "gen_key": g["gen_key"],
            "annotator": ctx.annotator,
            "user_kind": "imported",
            "label": label,
            "source": "import",
            "source_record": "kto:" + text_hash(f"{p['key']}:{g['gen_key']}:{int(label)}"),
        }
    )
    return batch


def is_hh_prompt(value: str) -> bool:
    """Whether a string prompt is HH-style text: a Human turn, ending on the assistant's cue."""
    return bool(_FIRST_HUMAN.search(value)) and bool(_HH_END.search(value))


def hh_prompt(value: str, ctx: Ctx) -> list[dict]:
    """Messages from HH-style prompt text; what comes before the first Human turn is a system message."""
    start = _FIRST_HUMAN.search(value).start()
    system, dialogue = value[:start], value[start:]
    turns = conversation(_HH_END.sub("", dialogue), "prompt", ctx)
    msgs = ([{"role": "system", "content": text(system, "prompt", ctx)}] if system else []) + turns
    check_context(msgs, "prompt", ctx)
    return msgs


def _label(value: Any, ctx: Ctx) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):  # 0/1 columns (pandas, some Parquet exports)
        return bool(value)
    got = repr(value) if isinstance(value, str | int | float) else type_name(value)
    raise ctx.error("label", f"expected true (desirable) or false (undesirable), got {got}")
