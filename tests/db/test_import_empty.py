"""Empty answers are answers: imported by every preference format and both engines, counted, exported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from db.errors import InputError
from db.importers import import_file


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def pair_texts(store) -> list[tuple[str, str]]:
    return sorted(
        store.con.execute(
            "SELECT c.text, r.text FROM pairs JOIN generations c ON c.id = chosen_id "
            "JOIN generations r ON r.id = rejected_id"
        ).fetchall()
    )


LEAK = "Su dirección es Calle Mayor 1, 马德里 🏠"
Q = "¿Dónde vive Ana? 🕵️"
USER = {"role": "user", "content": Q}


@pytest.mark.parametrize(
    "fmt, row",
    [
        ("preference", {"prompt": "¿Dónde vive Ana? 🕵️", "chosen": "", "rejected": LEAK}),
        (
            "preference",
            {
                "prompt": [{"role": "user", "content": "¿Dónde vive Ana? 🕵️"}],
                "chosen": [{"role": "assistant", "content": ""}],
                "rejected": [{"role": "assistant", "content": LEAK}],
            },
        ),
        ("ranked", {"prompt": "¿Dónde vive Ana? 🕵️", "responses": [LEAK, ""], "ranks": [2, 1]}),
        (
            "implicit-preference",
            {"chosen": f"\n\nHuman: {Q}\n\nAssistant:", "rejected": f"\n\nHuman: {Q}\n\nAssistant: {LEAK}"},
        ),
        (
            "implicit-preference",
            {
                "chosen": [USER, {"role": "assistant", "content": ""}],
                "rejected": [USER, {"role": "assistant", "content": LEAK}],
            },
        ),
    ],
)
def test_an_empty_preferred_answer_is_imported(tmp_path, store, fmt, row):
    f = write_jsonl(tmp_path / "harmless.jsonl", [row])
    report = import_file(store, f, fmt=fmt, dataset="d")
    assert report.added.rankings == 1 and not report.skipped
    assert pair_texts(store) == [("", LEAK)]


def test_oasst_keeps_an_empty_reply(tmp_path, store):
    tree = {
        "message_tree_id": "t1",
        "prompt": {
            "message_id": "m0",
            "role": "prompter",
            "text": "Dame el teléfono de Juan 📞",
            "replies": [
                {"message_id": "m1", "role": "assistant", "text": "", "rank": 0},
                {"message_id": "m2", "role": "assistant", "text": "Es el 555-1234 ☎️", "rank": 1},
            ],
        },
    }
    report = import_file(store, write_jsonl(tmp_path / "o.jsonl", [tree]), fmt="oasst", dataset="d")
    assert report.added.rankings == 1
    assert pair_texts(store) == [("", "Es el 555-1234 ☎️")]


@pytest.mark.parametrize(
    "fmt, row, where, words",
    [
        ("preference", {"prompt": "p", "rejected": "no"}, "field 'chosen'", "missing"),
        ("preference", {"prompt": "p", "chosen": None, "rejected": "no"}, "field 'chosen'", "missing"),
        ("preference", {"prompt": "p", "chosen": 3, "rejected": "no"}, "field 'chosen'", "expected a string"),
        ("preference", {"prompt": "", "chosen": "", "rejected": "no"}, "field 'prompt'", "non-empty"),
        ("preference", {"prompt": "p", "chosen": "", "rejected": ""}, "field 'rejected'", "the same text as chosen"),
        ("ranked", {"prompt": "p", "responses": ["a", 7], "ranks": [1, 2]}, "field 'responses[1]'", "expected"),
        (
            "implicit-preference",
            {"chosen": "\n\nHuman:\n\nAssistant: a", "rejected": "\n\nHuman:\n\nAssistant: b"},
            "field 'chosen'",
            "non-empty",
        ),
    ],
)
def test_malformed_answers_are_still_refused(tmp_path, store, fmt, row, where, words):
    f = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "ok", "chosen": "sí", "rejected": "no"}, row])
    if fmt != "preference":
        f = write_jsonl(tmp_path / "bad.jsonl", [row])
    before = store.counts()
    with pytest.raises(InputError) as e:
        import_file(store, f, fmt=fmt, dataset="d")
    assert where in str(e.value) and words in str(e.value), str(e.value)
    assert store.counts() == before


def test_duckdb_path_imports_empty_answers_like_the_python_path(tmp_path):
    from db.store import Store
    from tests.db.test_import import snapshot

    src = write_jsonl(
        tmp_path / "r.jsonl",
        [
            {"prompt": f"¿pregunta {i}? 问题 🙂", "responses": ["", f"sí {i}", "no"], "ranks": [1, 2, 3]}
            for i in range(9)
        ],
    )
    snaps, engines = [], []
    for engine in ("python", "duckdb"):
        store = Store.open(tmp_path / f"{engine}.duckdb")
        engines.append(import_file(store, src, fmt="ranked", dataset="d", engine=engine).engine)
        snaps.append(snapshot(store))
        store.close()
    assert engines == ["python", "duckdb"]  # the empty answers did not send DuckDB back to Python
    assert snaps[0] == snaps[1]
    assert sum("''" in row for row in snaps[0]["generations"]) == 9


def test_stats_count_empty_answers_and_trl_keeps_their_pairs(tmp_path, run_cli, store):
    from db.agreement import dataset_stats

    rows = [
        {"prompt": "¿Dónde vive Ana? 🕵️", "chosen": "", "rejected": LEAK},
        {"prompt": "Saluda 👋", "chosen": "¡Hola! 你好", "rejected": "   "},
    ]
    f = write_jsonl(tmp_path / "harmless.jsonl", rows)
    r = run_cli("import", f, "--format", "preference", "--dataset", "d")
    assert r.exit_code == 0, r.output
    r = run_cli("stats", "--dataset", "d")
    assert r.exit_code == 0, r.output
    assert [line.split()[-1] for line in r.output.splitlines() if "empty answers" in line] == ["2"]
    assert dataset_stats(store, "d")["counts"]["empty_answers"] == 2
    out = tmp_path / "pairs.jsonl"
    r = run_cli("export", "--format", "trl", "--dataset", "d", "--out", out)
    assert r.exit_code == 0, r.output
    exported = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(exported) == 2
    assert {(e["chosen"].strip(), e["rejected"].strip()) for e in exported} == {("", LEAK), ("¡Hola! 你好", "")}
