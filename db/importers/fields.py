"""Field checks shared by the format converters. Each raises InputError naming file, line and field."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from db.errors import InputError
from db.hashing import prompt_hash, text_hash
from db.media import configured_roots

MAX_FIELD_BYTES = 1_000_000  # one text field (prompt, answer, message); larger is almost surely a mistake
ROLES = ("system", "user", "assistant")


@dataclass
class Ctx:
    """Where a record came from, for messages and for the names derived from the file."""

    path: Path
    line: int = 0
    source: str = ""  # the file name, stored as prompts.source
    annotator: str = ""  # default annotator for imported rankings
    state: dict = field(default_factory=dict)  # per-file memory a format needs across records
    media_dir: Path | None = None  # where imported images are copied (db.media); None on a dry run: nothing written

    def media_roots(self) -> list[Path]:
        """The folders an image path in this file may lead into: the file's own, then PREFLAB_MEDIA_ROOT's."""
        return [self.path.parent.resolve(), *configured_roots()]

    def error(self, fld: str | None, message: str) -> InputError:
        return InputError(message, file=str(self.path), line=self.line, field=fld)


def dumps(value: Any) -> str:
    """JSON as stored in the database: the characters themselves, not \\u escapes."""
    return json.dumps(value, ensure_ascii=False)


def type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def get(rec: Any, key: str, ctx: Ctx, *, required: bool = True, where: str | None = None) -> Any:
    if not isinstance(rec, dict):
        raise ctx.error(where, f"expected a JSON object, got {type_name(rec)}")
    if key not in rec or rec[key] is None:
        if required:
            have = ", ".join(sorted(map(str, rec))) or "none"
            raise ctx.error(f"{where}.{key}" if where else key, f"missing (the record has: {have})")
        return None
    return rec[key]


def text(value: Any, fld: str, ctx: Ctx, *, allow_empty: bool = False) -> str:
    """A string field: present, a string, non-empty unless allow_empty, at most MAX_FIELD_BYTES of UTF-8."""
    if not isinstance(value, str):
        raise ctx.error(fld, f"expected a string, got {type_name(value)}")
    if not value and not allow_empty:
        raise ctx.error(fld, "expected a non-empty string")
    if len(value) > MAX_FIELD_BYTES // 4 and len(value.encode("utf-8")) > MAX_FIELD_BYTES:
        raise ctx.error(
            fld,
            f"{len(value.encode('utf-8')):,} bytes, over the limit of {MAX_FIELD_BYTES:,} bytes "
            "per text field; split or shorten it",
        )
    return value


def messages(
    value: Any,
    fld: str,
    ctx: Ctx,
    *,
    role_key: str = "role",
    content_key: str = "content",
    role_map: dict[str, str] | None = None,
    empty_answers: bool = False,
) -> list[dict]:
    """A conversation as [{"role", "content"}], roles checked (and mapped, for ShareGPT's from/value).

    empty_answers lets an assistant turn be "": in preference data saying nothing can be the preferred
    answer, so an empty answer is data, not a mistake. Other turns must say something."""
    if not isinstance(value, list):
        raise ctx.error(fld, f"expected a list of messages, got {type_name(value)}")
    if not value:
        raise ctx.error(fld, "expected at least one message, got an empty list")
    allowed = role_map or {r: r for r in ROLES}
    out = []
    for i, m in enumerate(value):
        where = f"{fld}[{i}]"
        if not isinstance(m, dict):
            raise ctx.error(
                where, f"expected a message object with '{role_key}' and '{content_key}', got {type_name(m)}"
            )
        role = get(m, role_key, ctx, where=where)
        if role not in allowed:
            raise ctx.error(f"{where}.{role_key}", f"unknown role {role!r}; expected one of {', '.join(allowed)}")
        empty_ok = empty_answers and allowed[role] == "assistant"
        content = text(get(m, content_key, ctx, where=where), f"{where}.{content_key}", ctx, allow_empty=empty_ok)
        out.append({"role": allowed[role], "content": content})
    return out


def prompt_messages(value: Any, fld: str, ctx: Ctx) -> list[dict]:
    """A prompt given as a string (one user turn) or as a message list ending on a user turn."""
    if isinstance(value, str):
        return [{"role": "user", "content": text(value, fld, ctx)}]
    if not isinstance(value, list):  # say both forms, not only the list one
        raise ctx.error(fld, f"expected a string or a list of messages, got {type_name(value)}")
    msgs = messages(value, fld, ctx)
    check_context(msgs, fld, ctx)
    return msgs


def check_context(msgs: list[dict], fld: str, ctx: Ctx) -> None:
    if msgs[-1]["role"] != "user":
        raise ctx.error(fld, f"the prompt must end with a user turn, it ends with {msgs[-1]['role']!r}")


def assistant_text(value: Any, fld: str, ctx: Ctx) -> str:
    """An answer: a string, or TRL's conversational form, a list with one assistant message. It may be empty
    (an empty reply is an answer, often the preferred one in harmlessness data); it may not be missing."""
    if isinstance(value, str):
        return text(value, fld, ctx, allow_empty=True)
    if not isinstance(value, list):
        raise ctx.error(fld, f"expected a string or a list with one assistant message, got {type_name(value)}")
    msgs = messages(value, fld, ctx, empty_answers=True)
    if len(msgs) != 1 or msgs[0]["role"] != "assistant":
        raise ctx.error(fld, "expected a string or a list with exactly one assistant message")
    return msgs[0]["content"]


def prompt_row(
    msgs: list[dict],
    ctx: Ctx,
    *,
    assets: list[str] | None = None,
    key_extra: str = "",
    external_id: str | None = None,
    metadata: dict | None = None,
) -> dict:
    key = prompt_hash(msgs) if not key_extra else text_hash(prompt_hash(msgs) + "\x1f" + key_extra)
    return {
        "key": key,
        "messages": dumps(msgs),
        "source": ctx.source,
        "external_id": external_id,
        "metadata": dumps(metadata) if metadata else None,
        "assets": dumps(assets) if assets else None,
    }


def generation_row(
    prompt_key: str, answer: str, kind: str, *, model: str | None = None, metadata: dict | None = None
) -> dict:
    return {
        "prompt_key": prompt_key,
        "gen_key": text_hash(answer),
        "text": answer,
        "kind": kind,
        "model": model,
        "metadata": dumps(metadata) if metadata else None,
    }


def ranking_record(prompt_key: str, ranked: list[tuple[str, int]]) -> str:
    """The source_record of a ranking whose record has no id of its own: the hash of its prompt and of its answers'
    (gen_key, rank) in shown order. Migration 0006 and db/importers/fastimport.py compute the same in SQL."""
    return text_hash(prompt_key + ":" + ",".join(f"{gen_key}={rank}" for gen_key, rank in ranked))
