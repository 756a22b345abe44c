"""Exports of the importer's multilingual fixtures (tests/data): what each file holds comes back in the export."""

import csv
import json
from pathlib import Path

from db.export import export
from tests.db.test_export import hh, lines

# ---- round trips with the importer's multilingual corpus (tests/data) --------------------------

DATA = Path(__file__).resolve().parents[1] / "data"


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
