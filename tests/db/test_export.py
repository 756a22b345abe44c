"""Exports: every format with Chinese/Spanish/emoji, ties, split, consensus filters, snapshots, and TRL loading."""

import csv
import hashlib
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


def test_consensus_filters_with_three_annotators(store, tmp_path):
    # A > B > C by two annotators, C > B > A by the third: every pair 2:1
    add_prompt(store, Q, ["A", "B", "C"], {"ana": [1, 2, 3], "bo": [1, 2, 3], "chen": [3, 2, 1]})
    add_prompt(store, "solo", ["x", "y"], {"ana": [1, 2]})
    r = export(store, "trl", tmp_path / "all.jsonl")
    pairs = {(row["chosen"], row["rejected"]) for row in lines(tmp_path / "all.jsonl")}
    assert pairs == {(" A", " B"), (" A", " C"), (" B", " C"), (" x", " y")} and r.counts["pairs"] == 4
    assert export(store, "trl", tmp_path / "a.jsonl", min_annotators=3).counts["pairs"] == 3
    assert export(store, "trl", tmp_path / "b.jsonl", min_annotators=4).counts["pairs"] == 0
    assert export(store, "trl", tmp_path / "c.jsonl", min_agreement=0.67).counts["pairs"] == 1  # only x > y (1.0)
    assert export(store, "trl", tmp_path / "d.jsonl", min_agreement=0.66).counts["pairs"] == 4


def test_source_filter(store, tmp_path):
    add_prompt(store, "people", ["a", "b"], {"ana": [1, 2]})
    add_prompt(store, "arena", ["c", "d"], {"voter": [2, 1]}, source="arena")
    got = {
        s: [
            (row["chosen"], row["rejected"])
            for row in lines(export(store, "trl", tmp_path / f"{s}.jsonl", source=s).path)
        ]
        for s in ("human", "arena", "all")
    }
    assert got == {"human": [(" a", " b")], "arena": [(" d", " c")], "all": [(" a", " b"), (" d", " c")]}


def test_split_by_prompt_is_disjoint_and_deterministic(store, tmp_path):
    b = Batch()
    for i in range(40):
        add_prompt(store, f"Pregunta {i} 东京", [f"bien {i}", f"mal {i}", f"peor {i}"], {"ana": [1, 2, 3]}, batch=b)
    store.write_batch("exp", b, created_by="test")
    r = export(store, "trl", tmp_path / "s.jsonl", split="test=0.25", seed=0)
    assert set(r.paths) == {"train", "test"} and r.paths["train"].name == "s_train.jsonl"
    train = {row["prompt"] for row in lines(r.paths["train"])}
    test = {row["prompt"] for row in lines(r.paths["test"])}
    assert not train & test and len(train | test) == 40 and 3 <= len(test) <= 20
    assert r.counts["train"] + r.counts["test"] == r.counts["pairs"] == 120
    again = export(store, "trl", tmp_path / "again.jsonl", split="test=0.25", seed=0)
    assert again.snapshot_id == r.snapshot_id
    assert {row["prompt"] for row in lines(again.paths["test"])} == test
    other = export(store, "trl", tmp_path / "other.jsonl", split="test=0.25", seed=1)
    assert {row["prompt"] for row in lines(other.paths["test"])} != test


def test_chunked_writing_gives_the_same_bytes(store, tmp_path, monkeypatch):
    import db.export.sql

    b = Batch()
    for i in range(12):
        add_prompt(store, f"Prompt {i} 🌸", [f"a{i}", f"b{i}", f"c{i}"], {"ana": [1, 2, 3]}, batch=b)
    store.write_batch("exp", b, created_by="test")
    whole = export(store, "trl-messages", tmp_path / "whole.jsonl", split="test=0.3")
    monkeypatch.setattr(db.export.sql, "CHUNK_PAIRS", 5)  # 36 pairs in several prompt-id chunks
    chunked = export(store, "trl-messages", tmp_path / "chunked.jsonl", split="test=0.3")
    assert chunked.snapshot_id == whole.snapshot_id and chunked.counts == whole.counts
    assert not list(tmp_path.glob(".*"))  # no temporary or part files left behind


def test_snapshot_id_is_a_content_hash(store, tmp_path):
    add_prompt(store, Q, ANSWERS, {"ana": [1, 2, 3]})
    one = export(store, "trl", tmp_path / "one.jsonl")
    two = export(store, "trl", tmp_path / "two.jsonl")
    assert one.snapshot_id == two.snapshot_id
    assert one.snapshot_id == hashlib.sha256((tmp_path / "one.jsonl").read_bytes()).hexdigest()  # = sha256sum
    meta = json.loads((tmp_path / "one.jsonl.snapshot.json").read_text(encoding="utf-8"))
    assert meta["id"] == one.snapshot_id and meta["format"] == "trl" and meta["counts"]["pairs"] == 3
    assert meta["filters"]["ties"] == "drop" and "created_at" in meta
    add_prompt(store, "otra pregunta", ["sí", "no"], {"ana": [1, 2]})
    assert export(store, "trl", tmp_path / "three.jsonl").snapshot_id != one.snapshot_id


def test_bad_options_are_one_clear_error(store, tmp_path):
    from db.errors import InputError

    tmp_path = tmp_path / "out"

    with pytest.raises(InputError, match="test=FRACTION"):
        export(store, "trl", tmp_path / "x.jsonl", split="test=1.5")
    with pytest.raises(InputError, match="unknown export format"):
        export(store, "nope", tmp_path / "x.jsonl")
    with pytest.raises(InputError, match="min_agreement"):
        export(store, "trl", tmp_path / "x.jsonl", min_agreement=2)
    assert not tmp_path.exists() or not list(tmp_path.iterdir())  # nothing half-written


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


# ---- the files load unchanged into TRL ----------------------------------------------------------


@pytest.fixture
def trl_files(store, tmp_path):
    for i, q in enumerate([Q, "¿Cuál es la raíz de 16?", "写一首诗 🌸", "Hola 👋"]):
        add_prompt(store, q, [f"Buena respuesta {i} ✅", f"Mala {i}", f"很差 {i}"], {"ana": [1, 2, 3]})
    return {fmt: export(store, fmt, tmp_path / f"{fmt}.jsonl").path for fmt in ("trl", "trl-messages")}


@pytest.mark.slow  # a real TRL training on the export
@pytest.mark.parametrize("fmt", ["trl", "trl-messages"])
def test_dpo_trainer_trains_on_the_export(trl_files, tiny_model_dir, tmp_path, fmt):
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    ds = load_dataset("json", data_files=str(trl_files[fmt]), split="train")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = DPOConfig(
        output_dir=str(tmp_path / "dpo"),
        use_cpu=True,
        bf16=False,
        max_steps=1,
        report_to=[],
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        save_strategy="no",
        logging_steps=1,
        max_length=64,
    )
    trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    trainer.train()
    assert trainer.state.global_step == 1
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())


@pytest.mark.slow  # a real TRL training on the export
@pytest.mark.parametrize("fmt", ["trl", "trl-messages"])
def test_reward_trainer_trains_on_the_export(trl_files, tiny_reward_dir, tmp_path, fmt):
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    ds = load_dataset("json", data_files=str(trl_files[fmt]), split="train")
    tok = AutoTokenizer.from_pretrained(tiny_reward_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_reward_dir, num_labels=1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = RewardConfig(
        output_dir=str(tmp_path / "rm"),
        use_cpu=True,
        bf16=False,
        max_steps=1,
        report_to=[],
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        save_strategy="no",
        logging_steps=1,
        max_length=64,
    )
    trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    trainer.train()
    assert trainer.state.global_step == 1
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())


# ---- round trips with the importer's multilingual corpus (tests/data) --------------------------

DATA = __import__("pathlib").Path(__file__).resolve().parents[1] / "data"


def _records(name):
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def _as_messages(value, role):
    return [{"role": role, "content": value}] if isinstance(value, str) else value


def test_preference_files_round_trip(store, tmp_path):
    from db.importers import import_file

    for name, fmt in [
        ("preference.jsonl", "preference"),
        ("ranked.jsonl", "ranked"),
        ("implicit_preference.jsonl", "implicit-preference"),
    ]:
        import_file(store, DATA / name, fmt=fmt, dataset=name)
    # preference: every record comes back as it went in (strings as one-message lists)
    got = lines(export(store, "trl-messages", tmp_path / "p.jsonl", dataset="preference.jsonl").path)
    want = [
        {
            "prompt": _as_messages(r["prompt"], "user"),
            "chosen": _as_messages(r["chosen"], "assistant"),
            "rejected": _as_messages(r["rejected"], "assistant"),
        }
        for r in _records("preference.jsonl")
    ]
    assert sorted(map(json.dumps, got)) == sorted(map(json.dumps, want))
    # ranked: every pair the ranks imply, better rank chosen; ties only with --ties keep
    want, ties = set(), set()
    for r in _records("ranked.jsonl"):
        for a, ra in zip(r["responses"], r["ranks"], strict=True):
            for b, rb in zip(r["responses"], r["ranks"], strict=True):
                if ra < rb:
                    want.add((hh(r["prompt"]), f" {a}", f" {b}"))
                elif ra == rb and a < b:
                    ties.add((hh(r["prompt"]), frozenset((f" {a}", f" {b}"))))
    got = lines(export(store, "trl", tmp_path / "r.jsonl", dataset="ranked.jsonl", ties="keep").path)
    assert {(g["prompt"], g["chosen"], g["rejected"]) for g in got if not g["is_tie"]} == want
    assert {(g["prompt"], frozenset((g["chosen"], g["rejected"]))) for g in got if g["is_tie"]} == ties
    # implicit preference: the shared prefix is the prompt, the differing tails the answers
    got = lines(export(store, "trl-messages", tmp_path / "i.jsonl", dataset="implicit_preference.jsonl").path)
    assert {(g["prompt"][-1]["content"], g["chosen"][0]["content"], g["rejected"][0]["content"]) for g in got} == {
        ("Say hi in emoji", "👋😊", "hi"),
        ("讲个笑话 😂", "为什么程序员喜欢黑暗？因为光会产生 bug。", "不要。"),
        ("¿Qué es el té verde? 🍵", "Una infusión de hojas de Camellia sinensis sin fermentar.", "Un color."),
    }


def test_oasst_ranks_come_back_as_pairs(store, tmp_path):
    from db.importers import import_file

    import_file(store, DATA / "oasst.jsonl", fmt="oasst", dataset="oasst")
    got = {(g["prompt"], g["chosen"], g["rejected"]) for g in lines(export(store, "trl", tmp_path / "o.jsonl").path)}
    q = hh("¿Qué es un 熊猫? 🐼")
    assert {
        (q, " Un oso de China que come bambú 🎋", " Un animal."),
        (q, " Un oso de China que come bambú 🎋", " Un panda gigante, símbolo de China 🇨🇳"),
    } <= got


def test_sft_and_classification_files_round_trip(store, tmp_path):
    from db.importers import import_file

    for name, fmt in [
        ("alpaca.jsonl", "alpaca"),
        ("messages.jsonl", "messages"),
        ("sharegpt.jsonl", "sharegpt"),
        ("classification.jsonl", "classification"),
        ("classification.csv", "classification"),
    ]:
        import_file(store, DATA / name, fmt=fmt, dataset=name)
    want = []
    for r in _records("alpaca.jsonl"):
        msgs = [{"role": "system", "content": r["system"]}] if r.get("system") else []
        for q, a in r.get("history", []):
            msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        user = r["instruction"] + (f"\n{r['input']}" if r["input"] else "")
        want.append(msgs + [{"role": "user", "content": user}, {"role": "assistant", "content": r["output"]}])
    got = [g["messages"] for g in lines(export(store, "sft", tmp_path / "a.jsonl", dataset="alpaca.jsonl").path)]
    assert sorted(map(json.dumps, got)) == sorted(map(json.dumps, want))
    want = [r.get("messages") or r["conversations"] for r in _records("messages.jsonl")]
    want = [m for m in want if m[-1]["role"] == "assistant"]  # a conversation without an answer has no reference
    got = [g["messages"] for g in lines(export(store, "sft", tmp_path / "m.jsonl", dataset="messages.jsonl").path)]
    assert sorted(map(json.dumps, got)) == sorted(map(json.dumps, want))
    roles = {"human": "user", "gpt": "assistant", "system": "system"}
    want = [
        [{"role": roles[t["from"]], "content": t["value"]} for t in r["conversations"]]
        for r in _records("sharegpt.jsonl")
    ]
    got = [g["messages"] for g in lines(export(store, "sft", tmp_path / "s.jsonl", dataset="sharegpt.jsonl").path)]
    assert sorted(map(json.dumps, got)) == sorted(map(json.dumps, want))
    want = sorted((r["text"], str(r["label"])) for r in _records("classification.jsonl"))
    got = lines(export(store, "classification", tmp_path / "c.jsonl", dataset="classification.jsonl").path)
    assert sorted((g["text"], g["label"]) for g in got) == want
    export(store, "classification", tmp_path / "c.csv", dataset="classification.csv")
    with (
        open(DATA / "classification.csv", encoding="utf-8", newline="") as a,
        open(tmp_path / "c.csv", encoding="utf-8", newline="") as b,
    ):
        assert sorted(map(tuple, csv.reader(a))) == sorted(map(tuple, csv.reader(b)))
