"""Which import format a record is written in, from its keys (`preflab import --format auto`).

The first matching rule wins, so a format whose keys are a superset of another's comes first.
"""

from __future__ import annotations

from typing import Any

SHP_KEYS = {"post_id", "history", "human_ref_A", "human_ref_B", "labels"}


def format_of(rec: dict[str, Any]) -> str | None:
    """The format name of a first record, or None when its keys match no format."""
    keys = set(rec)
    conversations = rec.get("conversations")
    if (
        "message_tree_id" in keys
        or ("replies" in keys and "role" in keys)
        or (isinstance(rec.get("prompt"), dict) and "replies" in rec["prompt"])
    ):
        return "oasst"
    if {"conversation_a", "conversation_b", "winner"} <= keys:
        return "arena-conversations"
    if SHP_KEYS <= keys:
        return "shp"
    if {"prompt", "completion", "label"} <= keys:
        return "kto"
    if "instruction" in keys and isinstance(rec.get("completions"), list):  # before alpaca's instruction rule
        return "ultrafeedback"
    if {"prompt", "response"} <= keys:  # one rated response per row; before the bare `prompts` rule
        return "helpsteer"
    if "prompt" in keys and isinstance(rec.get("answers"), list):
        return "nectar"
    if {"responses", "ranks"} <= keys:
        return "ranked"
    if {"chosen", "rejected"} <= keys:
        return "preference" if "prompt" in keys else "implicit-preference"
    if "instruction" in keys and "output" in keys:
        return "alpaca"
    if (
        isinstance(conversations, list)
        and conversations
        and isinstance(conversations[0], dict)
        and ("from" in conversations[0])
    ):
        return "sharegpt"
    if "messages" in keys or "conversations" in keys:
        return "messages"
    if {"text", "label"} <= keys:
        return "classification"
    if "prompt" in keys:
        return "prompts"
    return None
