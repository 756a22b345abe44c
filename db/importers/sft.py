"""Prompt and reference-answer formats: alpaca, messages, sharegpt, prompts, classification.

    alpaca          {"instruction": "...", "input": "...", "output": "...", "system"?: "...", "history"?: [[q, a]]}
    messages        {"messages" | "conversations": [{"role": "system"|"user"|"assistant", "content": "..."}]}
    sharegpt        {"conversations": [{"from": "human"|"gpt"|"system", "value": "..."}], "image" | "images": ...}
    prompts         {"prompt": "..." | [messages]}  or a text file, one prompt per line
    classification  {"text": "...", "label": ...}  or CSV with a header containing text and label

A final assistant turn (alpaca's output) becomes a reference answer (generation kind 'reference') for the
context before it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from db import media
from db.hashing import text_hash
from db.importers.fields import (
    Ctx,
    check_context,
    dumps,
    generation_row,
    get,
    messages,
    prompt_messages,
    prompt_row,
    text,
    type_name,
)
from db.staging import Batch

SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}


def _context_and_reference(msgs: list[dict], fld: str, ctx: Ctx, *, assets=None, key_extra: str = "") -> Batch:
    """A conversation -> its prompt, plus a reference answer when it ends on an assistant turn."""
    reference = None
    if msgs[-1]["role"] == "assistant":
        msgs, reference = msgs[:-1], msgs[-1]["content"]
        if not msgs:
            raise ctx.error(fld, "a lone assistant turn has no prompt; expected a user turn before it")
    check_context(msgs, fld, ctx)
    batch = Batch()
    p = prompt_row(msgs, ctx, assets=assets, key_extra=key_extra)
    batch.prompts.append(p)
    if reference is not None:
        batch.generations.append(generation_row(p["key"], reference, "reference"))
    return batch


def alpaca(rec: Any, ctx: Ctx) -> Batch:
    instruction = text(get(rec, "instruction", ctx), "instruction", ctx)
    extra = get(rec, "input", ctx, required=False) or ""
    extra = text(extra, "input", ctx, allow_empty=True)
    output = text(get(rec, "output", ctx), "output", ctx)
    msgs = []
    system = get(rec, "system", ctx, required=False)
    if system:
        msgs.append({"role": "system", "content": text(system, "system", ctx)})
    history = get(rec, "history", ctx, required=False) or []
    if not isinstance(history, list):
        raise ctx.error("history", f"expected a list of [instruction, answer] pairs, got {type_name(history)}")
    for i, turn in enumerate(history):
        if not (isinstance(turn, list) and len(turn) == 2):
            raise ctx.error(f"history[{i}]", "expected a pair [instruction, answer]")
        msgs.append({"role": "user", "content": text(turn[0], f"history[{i}][0]", ctx)})
        msgs.append({"role": "assistant", "content": text(turn[1], f"history[{i}][1]", ctx)})
    # LLaMA-Factory joins instruction and input with one newline; so do we, so exports read back the same
    msgs.append({"role": "user", "content": f"{instruction}\n{extra}" if extra else instruction})
    msgs.append({"role": "assistant", "content": output})
    return _context_and_reference(msgs, "output", ctx)


def messages_format(rec: Any, ctx: Ctx) -> Batch:
    key = "messages" if isinstance(rec, dict) and "messages" in rec else "conversations"
    msgs = messages(get(rec, key, ctx), key, ctx)
    return _context_and_reference(msgs, key, ctx)


def sharegpt(rec: Any, ctx: Ctx) -> Batch:
    msgs = messages(
        get(rec, "conversations", ctx),
        "conversations",
        ctx,
        role_key="from",
        content_key="value",
        role_map=SHAREGPT_ROLES,
    )
    system = get(rec, "system", ctx, required=False)
    if system:
        msgs.insert(0, {"role": "system", "content": text(system, "system", ctx)})
    key = "images" if isinstance(rec, dict) and rec.get("images") is not None else "image"
    images = get(rec, key, ctx, required=False)
    if images is None:
        images = []
    elif isinstance(images, str):
        images = [images]
    elif not isinstance(images, list):
        raise ctx.error(key, f"expected an image path or a list of paths, got {type_name(images)}")
    assets, digests = [], []
    for i, rel in enumerate(images):
        fld = f"{key}[{i}]" if key == "images" else key
        rel = text(rel, fld, ctx)
        try:
            path = media.check_image(ctx.path.parent, rel, ctx.media_roots())
        except media.ImageError as e:
            raise ctx.error(fld, str(e)) from None
        if ctx.media_dir is not None:
            stored, digest = media.keep(path, ctx.media_dir)
        else:  # a dry run writes nothing
            stored, digest = path, hashlib.sha256(path.read_bytes()).hexdigest()
        assets.append(str(stored))
        # the image's content is part of the prompt's identity: the same question about two pictures differs
        digests.append(digest)
    return _context_and_reference(msgs, "conversations", ctx, assets=assets or None, key_extra=",".join(digests))


def prompts(rec: Any, ctx: Ctx) -> Batch:
    if isinstance(rec, str):  # plain text, one prompt per line
        msgs = [{"role": "user", "content": text(rec, "prompt", ctx)}]
    else:
        msgs = prompt_messages(get(rec, "prompt", ctx), "prompt", ctx)
    batch = Batch()
    batch.prompts.append(prompt_row(msgs, ctx))
    return batch


def classification(rec: Any, ctx: Ctx) -> Batch:
    body = text(get(rec, "text", ctx), "text", ctx)
    label = get(rec, "label", ctx)
    if isinstance(label, bool) or not isinstance(label, str | int | float):
        raise ctx.error("label", f"expected a string or a number, got {type_name(label)}")
    label = text(str(label), "label", ctx)
    extra = {k: v for k, v in rec.items() if k not in ("text", "label")}
    batch = Batch()
    batch.examples.append(
        {
            "key": text_hash(f"{label}\x1f{body}"),
            "text": body,
            "label": label,
            "metadata": dumps(extra) if extra else None,
            "source": ctx.source,
        }
    )
    return batch
