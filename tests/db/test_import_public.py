"""The `nectar` and `arena-conversations` imports: by name and detected, text and models intact, battles kept
apart, ties and all-bad votes kept, idempotent, bad records refused by field, and the pairs they export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from db.errors import InputError
from db.export import export
from db.importers import import_file

DATA = Path(__file__).resolve().parents[1] / "data"
NECTAR = DATA / "nectar.jsonl"
ARENA = DATA / "arena_conversations.jsonl"


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize(
    ("path", "fmt", "counts"), [(NECTAR, "nectar", (3, 14, 3)), (ARENA, "arena-conversations", (3, 8, 4))]
)
@pytest.mark.parametrize("by_name", [False, True])
def test_imports_by_name_and_detected(run_cli, store, path, fmt, counts, by_name):
    args = ("--format", fmt) if by_name else ()
    r = run_cli("import", path, "--dataset", "d", *args)
    assert r.exit_code == 0, r.output
    assert by_name or f"detected format: {fmt}" in r.output
    c = store.counts()
    assert (c["prompts"], c["generations"], c["rankings"]) == counts
    again = run_cli("import", path, "--dataset", "d", *args)  # the same file again adds nothing
    assert again.exit_code == 0, again.output
    assert "added: 0 prompts, 0 generations, 0 rankings, 0 pairs, 0 examples" in again.output
    assert store.counts() == c


def test_nectar_answers_keep_their_model_and_rank(store):
    report = import_file(store, NECTAR, dataset="n")
    assert report.format == "nectar" and report.engine == "python"
    stored = {
        (t, m, rank)
        for t, m, rank in store.con.execute(
            "SELECT g.text, g.model, i.rank FROM ranking_items i JOIN generations g ON g.id = i.generation_id"
        ).fetchall()
    }
    want = {(a["answer"], a["model"], a["rank"]) for r in records(NECTAR) for a in r["answers"]}
    assert stored == want  # the empty answer of dolly-v2-12b included
    # the HH prompt is parsed into turns, the trailing "Assistant:" cue dropped; the other fields kept
    msgs, meta = store.con.execute(
        "SELECT messages, metadata FROM prompts WHERE messages LIKE '%tortilla%'"
    ).fetchall()[0]
    assert json.loads(msgs) == [
        {"role": "user", "content": "Hola, ¿puedes ayudarme?"},
        {"role": "assistant", "content": "¡Claro! ¿Qué necesitas?"},
        {"role": "user", "content": "Una receta de tortilla española 🥔🍳"},
    ]
    assert json.loads(meta) == {"turns": 2, "num_responses": 3, "source": ["anthropic-hh"], "good_natured": True}
    assert store.scalar("SELECT count(*) FROM pairs") == 21 + 3 + 6
    assert store.scalar("SELECT count(*) FROM pairs WHERE is_tie") == 1  # 🌊🌊🌊 and "blue water" share rank 2


def test_arena_battles_by_judges_with_ties_and_all_bad(store):
    report = import_file(store, ARENA, dataset="a", engine="duckdb")  # no DuckDB path for it: Python's rows
    assert report.engine == "python"
    acc = report.accounting()
    assert acc == {"read": 5, "added": 4, "already_stored": 0, "merged": 0, "skipped_invalid": 0, "skipped_empty": 1}
    assert report.empty == [5] and "differ before the last answer" in report.empty_reason
    rows = store.con.execute(
        """SELECT u.name, r.all_bad, r.source_record, list(g.model || '=' || i.rank ORDER BY i.position)
           FROM rankings r JOIN users u ON u.id = r.user_id JOIN ranking_items i ON i.ranking_id = r.id
           JOIN generations g ON g.id = i.generation_id GROUP BY ALL ORDER BY 3"""
    ).fetchall()
    assert [(name, bad, ranks) for name, bad, _, ranks in rows] == [
        ("arena_user_1004", True, ["oasst-pythia-12b=1", "alpaca-13b=1"]),
        ("arena_user_973", False, ["chatglm-6b=1", "koala-13b=2"]),
        ("arena_user_22", False, ["claude-v1=1", "dolly-v2-12b=1"]),
        ("arena_user_22", False, ["vicuna-13b=2", "gpt-4=1"]),
    ]
    assert all(src.startswith("arena:") for _, _, src, _ in rows)
    # two battles of one judge on one question: one prompt, two rankings
    assert (
        store.scalar(
            "SELECT count(DISTINCT prompt_id) FROM rankings r JOIN users u ON u.id = r.user_id "
            "WHERE u.name = 'arena_user_22'"
        )
        == 1
    )


def test_exported_pairs(store, tmp_path):
    import_file(store, NECTAR, dataset="n")
    import_file(store, ARENA, dataset="a")
    got = lines(export(store, "trl-messages", tmp_path / "n.jsonl", dataset="n").path)
    want = set()
    for r in records(NECTAR):
        for a in r["answers"]:
            for b in r["answers"]:
                if a["rank"] < b["rank"]:
                    want.add(
                        (r["prompt"].split("Human: ")[-1].removesuffix("\n\nAssistant:"), a["answer"], b["answer"])
                    )
    assert {(g["prompt"][-1]["content"], g["chosen"][0]["content"], g["rejected"][0]["content"]) for g in got} == want
    assert len(got) == 21 + 3 + 5
    # arena: a pair per decided battle; the two ties only with --ties keep
    got = lines(export(store, "trl-messages", tmp_path / "a.jsonl", dataset="a").path)
    assert {(g["prompt"][-1]["content"], g["chosen"][0]["content"], g["rejected"][0]["content"]) for g in got} == {
        ("中国的首都是哪里？🏯", "北京。", "上海 (Shanghai)."),
        ("hi 👋", "Hi there! 😊 What can I do for you today?", "Hello! How can I help?"),
    }
    kept = lines(export(store, "trl-messages", tmp_path / "t.jsonl", dataset="a", ties="keep").path)
    ties = {frozenset((g["chosen"][0]["content"], g["rejected"][0]["content"])) for g in kept if g["is_tie"]}
    assert ties == {frozenset(("Seis patas.", "Diez.")), frozenset(("Hey! ¿Qué tal?", "Hello."))}


ARENA_OK = records(ARENA)[0]


def _bad(**changes) -> dict:
    return {**ARENA_OK, **changes}


@pytest.mark.parametrize(
    ("fmt", "rec", "fld", "words"),
    [
        (
            "arena-conversations",
            _bad(
                conversation_b=[
                    {"role": "user", "content": "¿Otra pregunta?"},
                    {"role": "assistant", "content": "Sí."},
                ]
            ),
            "conversation_b",
            "user turns differ",
        ),
        ("arena-conversations", _bad(winner="model_c"), "winner", "unknown winner 'model_c'"),
        ("arena-conversations", _bad(judge=None), "judge", "missing"),
        (
            "arena-conversations",
            _bad(conversation_a=[{"role": "user", "content": "中国的首都是哪里？🏯"}]),
            "conversation_a",
            "must end with the model's answer",
        ),
        (
            "nectar",
            {
                "prompt": "\n\nHuman: ¿Sí? 🙂\n\nAssistant:",
                "answers": [{"answer": "a", "model": "m", "rank": 1}, {"answer": "b", "model": "m", "rank": 0}],
            },
            "answers[1].rank",
            "expected an integer rank from 1",
        ),
        ("nectar", {"prompt": "hola", "answers": []}, "prompt", "expected HH-RLHF text"),
    ],
)
def test_bad_records_are_refused_by_field(tmp_path, store, fmt, rec, fld, words):
    import_file(store, NECTAR, dataset="d")
    before = store.counts()
    f = tmp_path / "bad.jsonl"
    f.write_text(
        json.dumps(ARENA_OK if fmt.startswith("arena") else records(NECTAR)[0], ensure_ascii=False)
        + "\n"
        + json.dumps(rec, ensure_ascii=False)
        + "\n",
        encoding="utf-8",
    )
    with pytest.raises(InputError) as e:
        import_file(store, f, fmt=fmt, dataset="d")
    assert (e.value.line, e.value.field) == (2, fld) and words in str(e.value)
    assert store.counts() == before


@pytest.mark.parametrize("fmt", ["nectar", "arena-conversations"])
def test_the_example_in_docs_formats_imports(tmp_path, store, fmt):
    doc = (Path(__file__).resolve().parents[2] / "docs" / "formats.md").read_text(encoding="utf-8")
    row = next(line for line in doc.splitlines() if line.startswith(f"| `{fmt}` |"))
    example = json.loads(row.split("` | `", 1)[1].split("}` |", 1)[0] + "}")
    f = tmp_path / "example.jsonl"
    f.write_text(json.dumps(example, ensure_ascii=False) + "\n", encoding="utf-8")
    report = import_file(store, f, dataset="d")
    assert report.format == fmt and (report.added.rankings, report.added.pairs) == (1, 1)


def test_the_same_text_twice_is_one_answer_not_an_error(tmp_path, store):
    nectar = {
        "prompt": "\n\nHuman: Di algo amable 🌷\n\nAssistant:",
        "answers": [
            {"answer": "", "model": "dolly-v2-12b", "rank": 3},
            {"answer": "Eres genial 😊", "model": "gpt-4", "rank": 1},
            {"answer": "", "model": "alpaca-13b", "rank": 2},
        ],
    }
    f = tmp_path / "n.jsonl"
    f.write_text(json.dumps(nectar, ensure_ascii=False) + "\n", encoding="utf-8")
    assert import_file(store, f, fmt="nectar", dataset="n").added.pairs == 1
    assert store.con.execute(
        "SELECT g.text, g.model, i.rank FROM ranking_items i JOIN generations g ON g.id = i.generation_id ORDER BY 3"
    ).fetchall() == [("Eres genial 😊", "gpt-4", 1), ("", "alpaca-13b", 2)]
    same = {**ARENA_OK, "conversation_b": ARENA_OK["conversation_a"]}
    f = tmp_path / "a.jsonl"
    f.write_text(json.dumps(ARENA_OK, ensure_ascii=False) + "\n" + json.dumps(same) + "\n", encoding="utf-8")
    report = import_file(store, f, fmt="arena-conversations", dataset="a")
    assert report.added.rankings == 1 and report.empty == [2] and "same text" in report.empty_reason
