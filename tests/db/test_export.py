"""Exports: every format with Chinese/Spanish/emoji, ties and the CLI; the helpers other export tests share.

Filters, split and snapshots: test_export_filters.py; TRL loading: test_export_training.py; the importer's
fixtures exported: test_export_imported.py; import -> export -> import: test_roundtrip.py.
"""

import csv
import json

import pytest

from db.export import export
from db.hashing import prompt_hash, text_hash
from db.staging import Batch

Q = "¿Qué es 東京? 🗼"
ANSWERS = ["Es la capital de Japón 🇯🇵", "东京是日本的首都。", "No sé 🤷"]


def add_prompt(
    store, messages, answers, rankings, *, dataset="exp", source="human", refs=(), all_bad=(), batch=None, assets=None
):
    """One prompt (a message list or a user string) with answers ranked per annotator {name: [ranks]}.

    With `batch` the rows are only added to it (write many prompts in one write_batch: much faster).
    """
    msgs = [{"role": "user", "content": messages}] if isinstance(messages, str) else messages
    pk = prompt_hash(msgs)
    b = Batch() if batch is None else batch
    b.prompts.append(
        {"key": pk, "messages": json.dumps(msgs, ensure_ascii=False), "assets": json.dumps(assets) if assets else None}
    )
    for a in answers:
        b.generations.append(
            {
                "prompt_key": pk,
                "gen_key": text_hash(a),
                "text": a,
                "model": "tiny",
                "kind": "model",
                "params": json.dumps({"temperature": 0.7}),
            }
        )
    for a in refs:
        b.generations.append({"prompt_key": pk, "gen_key": text_hash(a), "text": a, "kind": "reference"})
    for who, ranks in rankings.items():
        key = f"{pk}/{who}"
        b.rankings.append(
            {"ranking_key": key, "prompt_key": pk, "annotator": who, "source": source, "all_bad": who in all_bad}
        )
        for a, r in zip(answers, ranks, strict=True):
            b.items.append({"ranking_key": key, "gen_key": text_hash(a), "rank": r})
    if batch is None:
        store.write_batch(dataset, b, created_by="test")


def hh(question: str) -> str:
    """A single-turn prompt as the `trl` export writes it (HH style: the answer continues after the cue)."""
    return f"\n\nHuman: {question}\n\nAssistant:"


def lines(path):
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def ranked(store):
    """Two prompts: one ranked by one annotator with a tie, one multi-turn with a system message."""
    add_prompt(store, Q, ANSWERS, {"ana": [1, 2, 3]})
    add_prompt(
        store,
        [
            {"role": "system", "content": "Responde en español."},
            {"role": "user", "content": "Hola 👋"},
            {"role": "assistant", "content": "¡Hola! ¿En qué te ayudo?"},
            {"role": "user", "content": "¿Cuánto es 2+2?"},
        ],
        ["Cuatro (4) ✅", "Cinco", "四"],
        {"ana": [1, 2, 2]},
    )
    return store


def test_trl_is_plain_strings_with_the_characters_themselves(ranked, tmp_path):
    r = export(ranked, "trl", tmp_path / "p.jsonl")
    raw = (tmp_path / "p.jsonl").read_text(encoding="utf-8")
    assert "東京" in raw and "🗼" in raw and "ñ" in raw and "\\u" not in raw
    rows = lines(tmp_path / "p.jsonl")
    assert r.counts == {"pairs": 5, "prompts": 2, "ties": 0}  # 3 + 2 (the tie is dropped)
    assert all(
        set(row) == {"prompt", "chosen", "rejected"} and all(isinstance(v, str) for v in row.values()) for row in rows
    )
    assert {
        "prompt": "\n\nHuman: ¿Qué es 東京? 🗼\n\nAssistant:",
        "chosen": " " + ANSWERS[0],
        "rejected": " " + ANSWERS[2],
    } in rows
    multi = [row["prompt"] for row in rows if " Cuatro (4) ✅" == row["chosen"]][0]
    assert multi == (
        "Responde en español.\n\nHuman: Hola 👋\n\nAssistant: ¡Hola! ¿En qué te ayudo?\n\nHuman: ¿Cuánto es 2+2?"
        "\n\nAssistant:"
    )
    # what TRL trains on is prompt + answer as they are: the answer follows the assistant cue
    assert multi + " Cuatro (4) ✅" in [row["prompt"] + row["chosen"] for row in rows]


def test_trl_messages_is_conversational(ranked, tmp_path):
    export(ranked, "trl-messages", tmp_path / "m.jsonl")
    rows = lines(tmp_path / "m.jsonl")
    assert {
        "prompt": [{"role": "user", "content": Q}],
        "chosen": [{"role": "assistant", "content": ANSWERS[0]}],
        "rejected": [{"role": "assistant", "content": ANSWERS[1]}],
    } in rows
    assert [m["role"] for m in rows[-1]["prompt"]] == ["system", "user", "assistant", "user"]


def test_ties_drop_or_keep(ranked, tmp_path):
    dropped = export(ranked, "trl", tmp_path / "d.jsonl")
    kept = export(ranked, "trl", tmp_path / "k.jsonl", ties="keep")
    assert (dropped.counts["pairs"], kept.counts["pairs"], kept.counts["ties"]) == (5, 6, 1)
    ties = [row for row in lines(tmp_path / "k.jsonl") if row["is_tie"]]
    assert {ties[0]["chosen"], ties[0]["rejected"]} == {" Cinco", " 四"}


def test_llamafactory_layouts_and_dataset_info(ranked, tmp_path):
    export(ranked, "llamafactory", tmp_path / "lf.jsonl")
    rows = lines(tmp_path / "lf.jsonl")
    assert {
        "instruction": Q,
        "input": "",
        "chosen": ANSWERS[0],
        "rejected": ANSWERS[1],
        "system": "",
        "history": [],
    } in rows
    last = rows[-1]
    assert (last["instruction"], last["system"]) == ("¿Cuánto es 2+2?", "Responde en español.")
    assert last["history"] == [["Hola 👋", "¡Hola! ¿En qué te ayudo?"]]
    export(ranked, "llamafactory", tmp_path / "sg.jsonl", layout="sharegpt")
    row = lines(tmp_path / "sg.jsonl")[-1]
    assert row["conversations"] == [
        {"from": "human", "value": "Hola 👋"},
        {"from": "gpt", "value": "¡Hola! ¿En qué te ayudo?"},
        {"from": "human", "value": "¿Cuánto es 2+2?"},
    ]
    assert row["chosen"] == {"from": "gpt", "value": "Cuatro (4) ✅"} and row["system"] == "Responde en español."
    info = json.loads((tmp_path / "dataset_info.json").read_text(encoding="utf-8"))
    assert info["lf"] == {
        "file_name": "lf.jsonl",
        "ranking": True,
        "columns": {
            "prompt": "instruction",
            "query": "input",
            "chosen": "chosen",
            "rejected": "rejected",
            "system": "system",
            "history": "history",
        },
    }
    assert info["sg"]["formatting"] == "sharegpt" and info["sg"]["ranking"] is True
    assert info["sg"]["columns"]["messages"] == "conversations"


def test_llamafactory_carries_image_paths(ranked, tmp_path):
    add_prompt(ranked, "<image>¿Qué color es? 🎨", ["Rojo 🟥", "Azul"], {"ana": [1, 2]}, assets=["/data/img/red.png"])
    export(ranked, "llamafactory", tmp_path / "vqa.jsonl", layout="sharegpt")
    rows = lines(tmp_path / "vqa.jsonl")
    assert [r["images"] for r in rows if r["chosen"]["value"] == "Rojo 🟥"] == [["/data/img/red.png"]]
    assert all(r["images"] == [] for r in rows if r["chosen"]["value"] != "Rojo 🟥")
    info = json.loads((tmp_path / "dataset_info.json").read_text(encoding="utf-8"))
    assert info["vqa"]["columns"]["images"] == "images"


def test_sft_best_ranked_reference_and_all_bad(store, tmp_path):
    add_prompt(store, Q, ANSWERS, {"ana": [2, 1, 3], "bo": [2, 1, 3], "chen": [1, 2, 3]}, refs=["Referencia 📚"])
    add_prompt(store, "Sólo referencia", [], {}, refs=["Respuesta escrita ✍️"])
    add_prompt(store, "Todo mal", ["malo", "peor"], {"ana": [1, 2]}, refs=["Bien hecho"], all_bad=("ana",))
    r = export(store, "sft", tmp_path / "sft.jsonl")
    got = {row["messages"][0]["content"]: row["messages"][-1] for row in lines(tmp_path / "sft.jsonl")}
    assert got == {
        Q: {"role": "assistant", "content": ANSWERS[1]},  # the majority's best, not chen's
        "Sólo referencia": {"role": "assistant", "content": "Respuesta escrita ✍️"},
        "Todo mal": {"role": "assistant", "content": "Bien hecho"},
    }
    assert (r.counts["ranked"], r.counts["reference"]) == (1, 2)
    export(store, "sft", tmp_path / "ref.jsonl", sft_prefer="reference")
    assert lines(tmp_path / "ref.jsonl")[0]["messages"][-1]["content"] == "Referencia 📚"


def test_classification_csv_and_jsonl(store, tmp_path):
    b = Batch()
    for text, label in [('Me encanta, 10/10 "genial" 😀', "pos"), ("很糟糕", "neg"), ("meh\nmeh", "neutral")]:
        b.examples.append({"key": text_hash(text), "text": text, "label": label})
    store.write_batch("cls", b, created_by="test")
    export(store, "classification", tmp_path / "c.csv", dataset="cls")
    expected = [
        {"text": 'Me encanta, 10/10 "genial" 😀', "label": "pos"},
        {"text": "meh\nmeh", "label": "neutral"},
        {"text": "很糟糕", "label": "neg"},
    ]
    with open(tmp_path / "c.csv", encoding="utf-8", newline="") as f:
        assert sorted(csv.DictReader(f), key=lambda r: r["text"]) == expected
    export(store, "classification", tmp_path / "c.jsonl", dataset="cls")
    assert sorted(lines(tmp_path / "c.jsonl"), key=lambda r: r["text"]) == expected


def test_parquet_has_provenance(store, tmp_path):
    import pyarrow.parquet as pq

    add_prompt(store, Q, ANSWERS, {"ana": [1, 2, 3], "bo": [1, 2, 3], "chen": [2, 1, 3]})
    export(store, "parquet", tmp_path / "p.parquet")
    rows = pq.read_table(tmp_path / "p.parquet").to_pylist()
    first = next(r for r in rows if (r["chosen"], r["rejected"]) == (ANSWERS[0], ANSWERS[1]))
    assert (first["votes_chosen"], first["votes_rejected"], first["n_votes"]) == (2, 1, 3)
    assert first["agreement"] == pytest.approx(2 / 3)
    assert sorted(first["annotators"]) == ["ana", "bo", "chen"] and len(first["ranking_ids"]) == 3
    assert first["prompt"] == [{"role": "user", "content": Q}] and first["prompt_text"] == Q
    assert (first["dataset"], first["chosen_model"], first["sources"]) == ("exp", "tiny", ["human"])
    assert json.loads(first["chosen_params"]) == {"temperature": 0.7}
    for col in (
        "prompt_id",
        "chosen_id",
        "rejected_id",
        "margin",
        "is_tie",
        "votes_tie",
        "chosen_created_at",
        "first_ranked_at",
        "chosen_engine",
        "chosen_adapter",
        "split",
    ):
        assert col in first


def test_cli_export(ranked, tmp_path, run_cli):
    ranked.close()
    out = tmp_path / "cli" / "prefs.jsonl"
    r = run_cli("export", "--format", "trl", "--out", out, "--dataset", "exp", "--split", "test=0.5", "--seed", "1")
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "cli" / "prefs.jsonl.snapshot.json").read_text(encoding="utf-8"))
    assert f"snapshot {meta['id']}" in r.output
    assert meta["filters"]["split"] == "test=0.5" and set(meta["files"]) == {"train", "test"}
    r = run_cli("export", "--format", "trl", "--out", out, "--dataset", "missing")
    assert r.exit_code == 1 and "no dataset named 'missing'" in r.output
    r = run_cli("export", "--format", "trl", "--out", out, "--split", "half")
    assert r.exit_code == 1 and "test=FRACTION" in r.output
