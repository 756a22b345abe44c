"""The `kto` import (TRL unpaired preference data) and export: binary feedback stored as such, detected, idempotent,
every record accounted for, a bad label refused by field, and kto -> export kto -> import kto gives the same
feedback, in the standard (HH-style text) and the conversational form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from db.errors import InputError
from db.export import export
from db.importers import import_file

KTO = Path(__file__).resolve().parents[1] / "data" / "kto.jsonl"
FEEDBACK_SQL = """SELECT p.messages, g.text, f.label, f.source, g.kind FROM feedback f
                  JOIN prompts p ON p.id = f.prompt_id JOIN generations g ON g.id = f.generation_id
                  JOIN datasets d ON d.id = p.dataset_id WHERE d.name = ? ORDER BY ALL"""


def feedback(store, dataset: str) -> list[tuple]:
    return store.con.execute(FEEDBACK_SQL, [dataset]).fetchall()


@pytest.mark.parametrize("by_name", [False, True])
def test_imports_feedback_by_name_and_detected(run_cli, store, by_name):
    args = ("--format", "kto") if by_name else ()
    r = run_cli("import", KTO, "--dataset", "k", *args)
    assert r.exit_code == 0, r.output
    assert by_name or "detected format: kto" in r.output
    assert "7 feedback" in r.output
    assert "records: 8 read = 7 added + 0 already stored + 1 merged" in r.output
    c = store.counts()
    assert (c["prompts"], c["generations"], c["rankings"], c["pairs"]) == (4, 6, 0, 0)
    again = run_cli("import", KTO, "--dataset", "k", *args)  # the same file again adds nothing
    assert again.exit_code == 0, again.output
    assert "records: 8 read = 0 added + 8 already stored + 0 merged" in again.output
    assert store.counts() == c


def test_same_answer_true_and_false_both_kept_and_hh_prompt_parsed(store):
    report = import_file(store, KTO, dataset="k")
    assert report.accounting() == {
        "read": 8,
        "added": 7,
        "already_stored": 0,
        "merged": 1,
        "skipped_invalid": 0,
        "skipped_empty": 0,
    }
    assert report.added.feedback == 7 and report.in_file["feedback"] == 7
    rows = feedback(store, "k")
    madrid = [label for msgs, text, label, _, _ in rows if text == "Madrid."]
    assert sorted(madrid) == [False, True]
    assert {(src, kind) for *_, src, kind in rows} == {("import", "imported")}
    hh = [(json.loads(m), t) for m, t, *_ in rows if "你好" in m]
    assert hh == [([{"role": "user", "content": "你好，请介绍一下你自己。"}], "你好！我是一个助手 🤖")]
    assert "" in {t for _, t, *_ in rows}  # an empty answer is an answer
    users = store.con.execute("SELECT DISTINCT u.name FROM feedback f JOIN users u ON u.id = f.user_id").fetchall()
    assert users == [("imported:kto",)]


@pytest.mark.parametrize("fmt", ["kto", "kto-messages"])
def test_round_trip_gives_the_same_feedback(store, tmp_path, fmt):
    import_file(store, KTO, dataset="k")
    out = export(store, fmt, tmp_path / "k.jsonl", dataset="k")
    assert out.counts == {"feedback": 7, "prompts": 4, "desirable": 4, "undesirable": 3}
    lines = [json.loads(x) for x in out.path.read_text(encoding="utf-8").splitlines()]
    assert all(set(x) == {"prompt", "completion", "label"} and isinstance(x["label"], bool) for x in lines)
    if fmt == "kto":  # standard form: prompt + completion is the conversation, HH style
        first = next(x for x in lines if "España" in x["prompt"] and x["completion"] == " Madrid.")
        assert first["prompt"] == "\n\nHuman: ¿Cuál es la capital de España?\n\nAssistant:"
        sys = next(x for x in lines if "vecino" in x["prompt"])
        assert sys == {
            "prompt": "Eres un asistente amable.\n\nHuman: Dame la dirección de mi vecino.\n\nAssistant:",
            "completion": "",
            "label": True,
        }
    back = import_file(store, out.path, dataset="back")
    assert back.format == "kto" and back.detected
    assert feedback(store, "back") == feedback(store, "k")


def test_export_filters_split_and_source(store, tmp_path):
    import_file(store, KTO, dataset="k")
    r = export(store, "kto", tmp_path / "s.jsonl", dataset="k", split="test=0.5", seed=1)
    assert r.counts["train"] + r.counts["test"] == 7
    train, test = (
        {json.loads(x)["prompt"] for x in r.paths[s].read_text(encoding="utf-8").splitlines()}
        for s in ("train", "test")
    )
    assert not train & test  # by prompt: no prompt on both sides
    assert export(store, "kto", tmp_path / "a.jsonl", dataset="k", source="arena").counts["feedback"] == 0
    assert export(store, "kto", tmp_path / "h.jsonl", dataset="k", source="human").counts["feedback"] == 7


@pytest.mark.parametrize(
    ("line", "field", "says"),
    [
        ({"prompt": "hola", "completion": "sí", "label": "yes"}, "label", "expected true (desirable) or false"),
        ({"prompt": "hola", "completion": "sí", "label": 2}, "label", "got 2"),
        ({"prompt": "hola", "completion": ["sí"], "label": True}, "completion[0]", "expected a message object"),
        ({"prompt": "", "completion": "sí", "label": True}, "prompt", "non-empty"),
        ({"prompt": "hola", "label": True}, "completion", "missing"),
    ],
)
def test_bad_record_refused_by_field_database_unchanged(store, tmp_path, line, field, says):
    path = tmp_path / "bad.jsonl"
    path.write_text(KTO.read_text(encoding="utf-8") + json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    before = store.counts()
    with pytest.raises(InputError) as e:
        import_file(store, path, fmt="kto")
    assert (e.value.line, e.value.field) == (9, field) and says in str(e.value)
    assert store.counts() == before


def test_label_one_and_zero_read_as_true_and_false(store, tmp_path):
    path = tmp_path / "ints.jsonl"
    path.write_text(
        '{"prompt": "¿Sí?", "completion": "Sí 👍", "label": 1}\n{"prompt": "¿Sí?", "completion": "No", "label": 0}\n',
        encoding="utf-8",
    )
    import_file(store, path, dataset="i")
    assert [(t, lab) for _, t, lab, *_ in feedback(store, "i")] == [("No", False), ("Sí 👍", True)]


def test_stats_show_feedback(run_cli, store):
    import_file(store, KTO, dataset="k")
    r = run_cli("stats", "--dataset", "k", "--json")
    assert r.exit_code == 0, r.output
    c = json.loads(r.output)["counts"]
    assert (c["feedback"], c["feedback_up"], c["feedback_down"], c["empty_answers"]) == (7, 4, 3, 1)
    r = run_cli("stats", "--dataset", "k")
    assert "desirable (up)" in r.output and "undesirable (down)" in r.output
