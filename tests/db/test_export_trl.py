"""The `trl` export writes HH-style text: prompt + answer, concatenated as TRL does, reads as the conversation."""

from __future__ import annotations

import json

from db.export import export
from tests.db.test_export import add_prompt, lines

SYSTEM = {"role": "system", "content": "Responde en español. 简洁。"}


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def hh_render(messages: list[dict]) -> str:
    """The rendering docs/formats.md describes, written independently of the SQL."""
    out = []
    for i, m in enumerate(messages):
        if m["role"] == "user":
            out.append(f"\n\nHuman: {m['content']}")
        elif m["role"] == "assistant":
            out.append("\n\nAssistant:" + (f" {m['content']}" if m["content"] else ""))
        else:
            out.append(m["content"] if i == 0 else f"\n\n{m['content']}")
    return "".join(out) + "\n\nAssistant:"


PROMPTS = [
    [user("¿Qué es 東京? 🗼")],
    [user("línea uno\n\nlínea dos 🙂")],
    [SYSTEM, user("Hola 👋")],
    [user("Mi hija tiene fiebre, ¿qué hago?"), assistant("¿Cuántos años tiene?"), user("Tres. 三岁")],
    [user("Dime algo"), assistant(""), user("¿Nada? 🤐")],
    [SYSTEM, user("a"), assistant("b"), {"role": "system", "content": "Ahora en inglés."}, user("c")],
]


def test_trl_prompt_is_hh_text_and_answers_continue_it(store, tmp_path):
    for i, msgs in enumerate(PROMPTS):
        add_prompt(store, msgs, [f"Respuesta {i} ✅", "", f"otra {i} 🚫"], {"ana": [1, 2, 3]})
    rows = lines(export(store, "trl", tmp_path / "t.jsonl").path)
    by_prompt: dict[str, list] = {}
    for row in rows:
        by_prompt.setdefault(row["prompt"], []).append(row)
    assert set(by_prompt) == {hh_render(m) for m in PROMPTS}
    for i, msgs in enumerate(PROMPTS):
        got = {(r["chosen"], r["rejected"]) for r in by_prompt[hh_render(msgs)]}
        # the empty answer is kept, as "" (not " "): prompt + "" ends on the assistant cue, as in HH-RLHF
        assert got == {(f" Respuesta {i} ✅", ""), (f" Respuesta {i} ✅", f" otra {i} 🚫"), ("", f" otra {i} 🚫")}
    multi = hh_render(PROMPTS[3])
    assert multi == (
        "\n\nHuman: Mi hija tiene fiebre, ¿qué hago?\n\nAssistant: ¿Cuántos años tiene?"
        "\n\nHuman: Tres. 三岁\n\nAssistant:"
    )
    assert multi + " Respuesta 3 ✅" in {r["prompt"] + r["chosen"] for r in rows}


def test_trl_messages_and_parquet_keep_the_answers_as_stored(store, tmp_path):
    add_prompt(store, PROMPTS[3], ["Sí ✅", "no"], {"ana": [1, 2]})
    row = lines(export(store, "trl-messages", tmp_path / "m.jsonl").path)[0]
    assert row["prompt"] == PROMPTS[3] and row["chosen"] == [assistant("Sí ✅")]
    import pyarrow.parquet as pq

    table = pq.read_table(export(store, "parquet", tmp_path / "p.parquet").path).to_pylist()
    assert table[0]["chosen"] == "Sí ✅" and json.dumps(table[0]["prompt"], ensure_ascii=False).count("Tres") == 1
