"""The `shp` import (stanfordnlp/SHP): by name and detected, idempotent, every pair of a post a ranking of its
own, the scores and score ratio kept, a bad `labels` refused by field, and the example in docs/formats.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from db.errors import InputError
from db.importers import import_file

SHP = Path(__file__).resolve().parents[1] / "data" / "shp.jsonl"


def records() -> list[dict]:
    return [json.loads(line) for line in SHP.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("by_name", [False, True])
def test_imports_by_name_and_detected(run_cli, store, by_name):
    args = ("--format", "shp") if by_name else ()
    r = run_cli("import", SHP, "--dataset", "d", *args)
    assert r.exit_code == 0, r.output
    assert by_name or "detected format: shp" in r.output
    c = store.counts()
    assert (c["prompts"], c["generations"], c["rankings"]) == (2, 5, 3)
    again = run_cli("import", SHP, "--dataset", "d", *args)  # the same file again adds nothing
    assert again.exit_code == 0, again.output
    assert "added: 0 prompts, 0 generations, 0 rankings, 0 pairs, 0 examples" in again.output
    assert store.counts() == c


def test_two_records_on_one_post_are_two_rankings_with_scores_kept(store):
    report = import_file(store, SHP, dataset="s")
    assert report.format == "shp" and report.accounting()["added"] == 3
    rows = store.con.execute(
        """SELECT r.source_record, n.metadata, list(g.text || '=' || i.rank ORDER BY i.position)
           FROM rankings r JOIN ranking_notes n ON n.ranking_id = r.id
           JOIN ranking_items i ON i.ranking_id = r.id JOIN generations g ON g.id = i.generation_id
           JOIN prompts p ON p.id = r.prompt_id WHERE p.messages LIKE '%cielo%' GROUP BY ALL ORDER BY 1"""
    ).fetchall()
    a, b, _ = (r for r in records())
    assert [(src, json.loads(comment), ranks) for src, comment, ranks in rows] == [
        (
            "shp:p1:cA1:cB1",
            {"score_ratio": a["score_ratio"], "seconds_difference": 3600.0},
            [a["human_ref_A"] + "=1", a["human_ref_B"] + "=2"],
        ),
        (
            "shp:p1:cB1:cC1",
            {"score_ratio": b["score_ratio"], "seconds_difference": 3500.0},
            [b["human_ref_A"] + "=2", b["human_ref_B"] + "=1"],
        ),
    ]
    meta = store.scalar("SELECT metadata FROM prompts WHERE messages LIKE '%cielo%'")
    assert json.loads(meta) == {"post_id": "p1", "domain": "askscience_train", "upvote_ratio": 0.98}
    scores = dict(store.con.execute("SELECT text, metadata FROM generations").fetchall())
    assert json.loads(scores["因为海是蓝色的。"]) == {"c_root_id": "cB1", "created_at_utc": 1674003600, "score": 14}
    assert json.loads(scores["Rayleigh scattering 🌈"])["score"] == 30


@pytest.mark.parametrize(
    ("change", "fld", "words"),
    [
        ({"labels": 2}, "labels", "expected 1 (A preferred) or 0 (B preferred), got 2"),
        ({"labels": True}, "labels", "got True"),
        ({"labels": None}, "labels", "missing"),
        ({"score_B": "muchos 👍"}, "score_B", "expected a number"),
        ({"history": ""}, "history", "non-empty"),
    ],
)
def test_bad_records_are_refused_by_field(tmp_path, store, change, fld, words):
    import_file(store, SHP, dataset="d")
    before = store.counts()
    first, *_ = records()
    f = tmp_path / "bad.jsonl"
    f.write_text(
        json.dumps({**first, "post_id": "p3"}, ensure_ascii=False)
        + "\n"
        + json.dumps({**first, **change}, ensure_ascii=False)
        + "\n",
        encoding="utf-8",
    )
    with pytest.raises(InputError) as e:
        import_file(store, f, fmt="shp", dataset="d")
    assert (Path(e.value.file).name, e.value.line, e.value.field) == ("bad.jsonl", 2, fld)
    assert words in str(e.value)
    assert store.counts() == before


def test_the_example_in_docs_formats_imports(tmp_path, store):
    doc = (Path(__file__).resolve().parents[2] / "docs" / "formats.md").read_text(encoding="utf-8")
    row = next(line for line in doc.splitlines() if line.startswith("| `shp` |"))
    example = json.loads(row.split("` | `", 1)[1].split("}` |", 1)[0] + "}")
    f = tmp_path / "example.jsonl"
    f.write_text(json.dumps(example, ensure_ascii=False) + "\n", encoding="utf-8")
    report = import_file(store, f, dataset="d")
    assert report.format == "shp" and (report.added.rankings, report.added.pairs) == (1, 1)
