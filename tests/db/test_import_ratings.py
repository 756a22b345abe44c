"""The `ultrafeedback` and `helpsteer` imports and the `ratings` export: by name and detected, idempotent, the
accounting adds up, ratings (N/A, rationales, ties) kept, bad fields refused with the database unchanged, a
one-answer ranking tolerated downstream, and the round trips import -> export ratings -> import helpsteer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from db.agreement import dataset_stats
from db.errors import InputError
from db.export import export
from db.importers import import_file
from db.store import Store

DATA = Path(__file__).resolve().parents[1] / "data"
UF, HS = DATA / "ultrafeedback.jsonl", DATA / "helpsteer.jsonl"


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write(path: Path, recs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    return path


def rating_set(store: Store) -> set[tuple]:
    """What a ratings round trip must keep: (prompt, response, aspect, value, rationale)."""
    return set(
        store.con.execute(
            """SELECT p.messages, g.text, t.aspect, t.value, t.rationale FROM ratings t
               JOIN generations g ON g.id = t.generation_id JOIN prompts p ON p.id = g.prompt_id"""
        ).fetchall()
    )


def ranks(store: Store, like: str) -> dict[str, int]:
    return dict(
        store.con.execute(
            """SELECT g.text, i.rank FROM ranking_items i JOIN generations g ON g.id = i.generation_id
               JOIN prompts p ON p.id = g.prompt_id WHERE p.messages LIKE ?""",
            [f"%{like}%"],
        ).fetchall()
    )


@pytest.mark.parametrize(
    ("path", "fmt", "counts"),
    [(UF, "ultrafeedback", (3, 8, 3, 40)), (HS, "helpsteer", (3, 5, 3, 25))],
)
@pytest.mark.parametrize("by_name", [False, True])
def test_imports_by_name_and_detected(run_cli, store, path, fmt, counts, by_name):
    args = ("--format", fmt) if by_name else ()
    r = run_cli("import", path, "--dataset", "d", *args)
    assert r.exit_code == 0, r.output
    assert by_name or f"detected format: {fmt}" in r.output
    c = store.counts()
    assert (c["prompts"], c["generations"], c["rankings"], store.scalar("SELECT count(*) FROM ratings")) == counts
    again = import_file(store, path, dataset="d")  # the same file again adds nothing, every record already stored
    assert again.added.as_dict() == {k: 0 for k in again.added.as_dict()}
    n = len(lines(path))
    assert again.accounting() == {
        "read": n,
        "added": 0,
        "already_stored": n,
        "merged": 0,
        "skipped_invalid": 0,
        "skipped_empty": 0,
    }
    assert store.counts() == c


def test_ultrafeedback_ranks_by_overall_score_and_keeps_every_rating(store):
    report = import_file(store, UF, dataset="u")
    assert report.accounting()["added"] == 3
    sky = ranks(store, "cielo")  # 8.5 and 8.5 tie at 1, then 5.0, then 3.0
    assert sorted(sky.values()) == [1, 1, 2, 3] and sky["Porque refleja el océano 🌊"] == 3
    rows = {
        (text, aspect): (value, why, meta and json.loads(meta))
        for text, aspect, value, why, meta in store.con.execute(
            """SELECT g.text, t.aspect, t.value, t.rationale, t.metadata FROM ratings t
               JOIN generations g ON g.id = t.generation_id"""
        ).fetchall()
    }
    unsure = "No estoy seguro, quizá por el ozono."
    assert rows[unsure, "honesty"] == (None, "Expresa su incertidumbre con honestidad.", None)  # "N/A"
    assert rows[unsure, "helpfulness"] == (
        None,
        "Útil, aunque breve.",
        {"Type": [], "Rationale": "Claro y relevante."},
    )
    assert rows[unsure, "truthfulness"][:2] == (2.0, "Todo es correcto 👍")
    assert rows[unsure, "overall_score"] == (5.0, "Honesta pero incorrecta.", None)
    model, meta = store.con.execute("SELECT model, metadata FROM generations WHERE text = ?", [unsure]).fetchall()[0]
    assert model == "alpaca-7b"
    assert json.loads(meta) == {
        "custom_system_prompt": "Eres un asistente útil. 🤖",
        "fine-grained_score": 2.5,
        "principle": "verbalized_calibration",
    }
    # two models wrote the same text: one answer, with the ratings of the better-scored completion
    wall = ranks(store, "长城")
    assert wall == {"长城是中国古代修建的防御工程，绵延数千公里。": 1, "The Great Wall is a wall. 🤷": 3}
    assert rows["长城是中国古代修建的防御工程，绵延数千公里。", "overall_score"][:2] == (7.0, "准确简洁。")
    sources = {r[0] for r in store.con.execute("SELECT source_record FROM rankings").fetchall()}
    assert "ultrafeedback:uf-3" in sources and all(s.startswith("ultrafeedback:") for s in sources)
    assert rows["", "honesty"][0] is None  # the empty answer is an answer, rated like the others


def test_helpsteer_ranks_the_responses_of_a_prompt_across_the_file(store):
    report = import_file(store, HS, dataset="h")
    assert (report.added.rankings, report.added.pairs) == (3, 2)
    assert ranks(store, "Australia") == {
        "La capital de Australia es Canberra.": 1,
        "Sídney, la ciudad más grande. 🏙️": 2,
    }
    assert set(ranks(store, "机器学习").values()) == {1}  # helpfulness 3 and 3: a tie
    assert list(ranks(store, "haiku").values()) == [1]  # one response: a one-answer ranking, no pairs
    verbosity = store.scalar(
        """SELECT list(t.value) FROM ratings t JOIN generations g ON g.id = t.generation_id
           WHERE t.aspect = 'verbosity' AND g.text LIKE 'Machine learning%'"""
    )
    assert verbosity == [None]


def test_every_helpsteer_record_is_accounted_for(tmp_path, store):
    recs = lines(HS)
    f = write(tmp_path / "hs.jsonl", [*recs, recs[0]])  # the first row again: merged into it
    report = import_file(store, f, dataset="h")
    a = report.accounting()
    assert (a["read"], a["added"], a["merged"]) == (6, 5, 1)
    assert a["read"] == sum(v for k, v in a.items() if k != "read")
    # the same rows by another annotator: new rankings over stored answers, so every record added something
    other = write(tmp_path / "hs2.jsonl", [{**r, "annotator": "ana"} for r in recs])
    report = import_file(store, other, dataset="h")
    a = report.accounting()
    assert report.added.rankings == 3 and report.added.generations == 0
    assert (a["read"], a["added"]) == (5, 3)  # each ranking counts for the first record of its prompt
    assert a["read"] == sum(v for k, v in a.items() if k != "read")


def test_a_record_without_completions_holds_nothing_to_import(tmp_path, store):
    recs = lines(UF)
    f = write(tmp_path / "uf.jsonl", [*recs, {"instruction": "¿Nada? 🤐", "completions": []}])
    report = import_file(store, f, dataset="u")
    assert report.accounting()["skipped_empty"] == 1 and report.empty == [4]


def _uf_bad(change) -> dict:
    rec = lines(UF)[0]
    change(rec)
    return rec


@pytest.mark.parametrize(
    ("path", "fmt", "rec", "fld", "words"),
    [
        (
            UF,
            "ultrafeedback",
            _uf_bad(lambda r: r["completions"][2]["annotations"]["honesty"].update(Rating="cinco ⭐")),
            "completions[2].annotations.honesty.Rating",
            "expected a rating",
        ),
        (
            UF,
            "ultrafeedback",
            _uf_bad(lambda r: r["completions"][1]["annotations"]["truthfulness"].pop("Rating")),
            "completions[1].annotations.truthfulness.Rating",
            "missing",
        ),
        (
            UF,
            "ultrafeedback",
            _uf_bad(lambda r: r["completions"][0].update(overall_score="alto")),
            "completions[0].overall_score",
            "expected a number",
        ),
        (UF, "ultrafeedback", _uf_bad(lambda r: r.update(completions="ninguna")), "completions", "a list"),
        (HS, "helpsteer", {**lines(HS)[0], "helpfulness": "4"}, "helpfulness", "expected a number"),
        (HS, "helpsteer", {**lines(HS)[0], "rationales": {"humor": "😂"}}, "rationales.humor", "does not rate"),
        (HS, "helpsteer", {**lines(HS)[0], "response": None}, "response", "missing"),
    ],
)
def test_bad_records_are_refused_by_field(tmp_path, store, path, fmt, rec, fld, words):
    import_file(store, path, dataset="d")
    before = (store.counts(), store.scalar("SELECT count(*) FROM ratings"))
    good = lines(path)[1]
    f = write(tmp_path / "bad.jsonl", [good, rec])
    with pytest.raises(InputError) as e:
        import_file(store, f, fmt=fmt, dataset="d")
    assert (Path(e.value.file).name, e.value.line, e.value.field) == ("bad.jsonl", 2, fld)
    assert words in str(e.value)
    assert (store.counts(), store.scalar("SELECT count(*) FROM ratings")) == before


@pytest.mark.parametrize("path", [UF, HS])
def test_ratings_round_trip_through_helpsteer(tmp_path, store, path):
    import_file(store, path, dataset="d")
    out = export(store, "ratings", tmp_path / "ratings.jsonl", dataset="d")
    assert out.counts["ratings"] == store.scalar("SELECT count(*) FROM ratings")
    again = Store.open(tmp_path / "fresh.duckdb")
    try:
        report = import_file(again, out.path, dataset="d")
        assert report.format == "helpsteer" and report.detected
        assert rating_set(again) == rating_set(store)
        if path == HS:  # the rankings come back too: helpsteer ranks by helpfulness both ways
            assert again.counts()["pairs"] == store.counts()["pairs"]
        twice = export(again, "ratings", tmp_path / "twice.jsonl", dataset="d")
        assert twice.path.read_bytes() == out.path.read_bytes()
    finally:
        again.close()


def test_ratings_export_lines_split_and_suffix(tmp_path, store):
    import_file(store, HS, dataset="h")
    out = export(store, "ratings", tmp_path / "r.jsonl", dataset="h")
    rows = lines(out.path)
    canberra = next(r for r in rows if "Canberra" in r["response"])
    assert canberra == {
        "prompt": "¿Cuál es la capital de Australia? 🦘",
        "response": "La capital de Australia es Canberra.",
        "coherence": 4,
        "complexity": 1,
        "correctness": 4,
        "helpfulness": 4,
        "verbosity": 1,
        "annotator": "imported:helpsteer",
    }
    assert "🦘" in out.path.read_text(encoding="utf-8")  # the characters themselves, not \\u escapes
    split = export(store, "ratings", tmp_path / "s.jsonl", dataset="h", split="test=0.5", seed=1)
    assert split.counts["train"] + split.counts["test"] == len(rows) == split.counts["examples"]
    with pytest.raises(InputError, match="JSON Lines"):
        export(store, "ratings", tmp_path / "r.csv", dataset="h")


def test_a_multi_turn_prompt_is_exported_as_messages(tmp_path, store):
    msgs = [
        {"role": "system", "content": "Responde en español."},
        {"role": "user", "content": "Hola 👋"},
        {"role": "assistant", "content": "¡Hola!"},
        {"role": "user", "content": "¿2+2?"},
    ]
    f = write(tmp_path / "mt.jsonl", [{"prompt": msgs, "response": "4", "helpfulness": 4}])
    import_file(store, f, fmt="helpsteer", dataset="m")
    out = export(store, "ratings", tmp_path / "r.jsonl", dataset="m")
    assert lines(out.path) == [{"prompt": msgs, "response": "4", "helpfulness": 4, "annotator": "imported:mt"}]


def test_one_answer_rankings_pass_through_stats_and_exports(tmp_path, store):
    f = write(tmp_path / "one.jsonl", [lines(HS)[4]])  # a single response: a one-answer ranking
    import_file(store, f, dataset="one")
    stats = dataset_stats(store, "one")
    assert stats["counts"]["rankings"] == 1 and stats["counts"]["pairs"] == 0
    for fmt in ("trl", "sft", "parquet", "ratings"):
        r = export(store, fmt, tmp_path / f"x.{fmt}", dataset="one")
        assert r.counts.get("pairs", 0) == 0
    assert export(store, "ratings", tmp_path / "one.jsonl", dataset="one").counts["examples"] == 1


@pytest.mark.parametrize("fmt", ["ultrafeedback", "helpsteer", "ratings"])
def test_the_examples_in_docs_formats(tmp_path, store, fmt):
    doc = (Path(__file__).resolve().parents[2] / "docs" / "formats.md").read_text(encoding="utf-8")
    row = next(line for line in doc.splitlines() if line.startswith(f"| `{fmt}` |"))
    example = json.loads(row.split("` | `", 1)[1].split("}` |", 1)[0] + "}")
    f = write(tmp_path / "example.jsonl", [example])
    report = import_file(store, f, dataset="d")
    assert report.format == ("helpsteer" if fmt == "ratings" else fmt)
    assert store.scalar("SELECT count(*) FROM ratings") > 0
