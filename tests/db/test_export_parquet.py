"""A Parquet export names its snapshot inside the file, and carries each answer's model and adapter."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from db.export import export
from tests.db.test_export import ANSWERS, Q, add_prompt


def test_parquet_metadata_holds_the_snapshot_id(store, tmp_path):
    from alignment.data import snapshot_id

    add_prompt(store, Q, ANSWERS, {"ana": [1, 2, 3]})
    add_prompt(store, "¿Y Madrid? 🇪🇸", ["España", "Francia"], {"ana": [1, 2]}, dataset="otro")
    r = export(store, "parquet", tmp_path / "p.parquet", min_agreement=0.5)
    meta = pq.read_schema(r.path).metadata
    assert meta[b"preflab.snapshot_id"].decode() == r.snapshot_id
    assert (meta[b"preflab.format"], meta[b"preflab.split"]) == (b"parquet", b"all")
    assert json.loads(meta[b"preflab.filters"].decode())["min_agreement"] == 0.5
    sidecar = json.loads(r.snapshot_path.read_text(encoding="utf-8"))
    assert sidecar["id"] == r.snapshot_id
    # the file as it is on disk (metadata included) is what the sidecar's sha256 describes
    from db.export import file_digest

    assert sidecar["sha256"]["all"] == file_digest(r.path)
    # the rows are untouched by the rewrite, in order, and the same state gives the same id
    keys = [(row["prompt_id"], row["chosen_id"], row["rejected_id"]) for row in pq.read_table(r.path).to_pylist()]
    assert len(keys) == r.counts["pairs"] == 4 and keys == sorted(keys)
    assert export(store, "parquet", tmp_path / "again.parquet", min_agreement=0.5).snapshot_id == r.snapshot_id
    # a training run finds the id in the file itself when the sidecar is gone
    r.snapshot_path.unlink()
    assert snapshot_id(r.path) == r.snapshot_id


def test_split_parquet_files_each_carry_the_snapshot_id(store, tmp_path):
    for i in range(12):
        add_prompt(store, f"pregunta {i} 问题", [f"sí {i}", f"no {i}"], {"ana": [1, 2]})
    r = export(store, "parquet", tmp_path / "s.parquet", split="test=0.5", seed=0)
    for side in ("train", "test"):
        meta = pq.read_schema(r.paths[side]).metadata
        assert meta[b"preflab.snapshot_id"].decode() == r.snapshot_id and meta[b"preflab.split"] == side.encode()
    # JSON Lines carry no metadata: their id stays the sha256 of the file
    from db.export import file_digest

    jsonl = export(store, "trl", tmp_path / "t.jsonl")
    assert jsonl.snapshot_id == file_digest(jsonl.path)
