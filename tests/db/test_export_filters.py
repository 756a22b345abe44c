"""Export filters and files: consensus filters, source, split by prompt, chunked writing, snapshot ids, bad options."""

import hashlib
import json

import pytest

from db.export import export
from db.staging import Batch
from tests.db.test_export import ANSWERS, Q, add_prompt, lines


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


def test_an_export_config_or_a_format_with_filter_keywords(store, tmp_path):
    from db.export import ExportConfig

    add_prompt(store, Q, ANSWERS, {"ana": [1, 2, 3]})
    by_config = export(store, ExportConfig(format="trl", min_agreement="0.5"), tmp_path / "c.jsonl")
    by_keywords = export(store, "trl", tmp_path / "k.jsonl", min_agreement=0.5)
    assert by_config.snapshot_id == by_keywords.snapshot_id and by_config.counts["pairs"] == 3
    with pytest.raises(TypeError, match="in the ExportConfig"):
        export(store, ExportConfig(format="trl"), tmp_path / "x.jsonl", ties="keep")


def test_every_filter_is_a_query_parameter_of_the_export_route():
    import inspect

    from db.export import filter_fields
    from serving.api.data import _export_query

    params = inspect.signature(_export_query()).parameters
    assert list(params) == ["format", *(f.name for f in filter_fields())]
    cfg = _export_query()(**{n: p.default.default for n, p in params.items() if n != "format"}, format="sft")
    assert cfg.format == "sft" and cfg.filters() == {
        f.name: f.default for f in filter_fields()
    }  # the route's defaults are ExportConfig's
