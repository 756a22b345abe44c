"""Hugging Face dataset folders as import input: save_to_disk output (a Dataset, a DatasetDict with --split) and
Parquet shard folders, formats detected, every row of every shard read, errors naming the shard and row."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from db.errors import InputError
from db.importers import import_file

DATA = Path(__file__).resolve().parents[1] / "data"


def rows(name: str) -> list[dict]:
    return [json.loads(x) for x in (DATA / name).read_text(encoding="utf-8").splitlines() if x.strip()]


def standard_kto() -> list[dict]:
    return [r for r in rows("kto.jsonl") if isinstance(r["prompt"], str)]


def texts(store) -> set[str]:
    return {t for (t,) in store.con.execute("SELECT text FROM generations").fetchall()}


def test_save_to_disk_kto_detected_every_row(store, tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(standard_kto()).save_to_disk(str(tmp_path / "kto_ds"))
    report = import_file(store, tmp_path / "kto_ds")
    assert (report.format, report.detected) == ("kto", True)
    assert report.accounting()["read"] == len(standard_kto()) == 5
    assert report.added.feedback == 4 and report.accounting()["merged"] == 1  # the repeated line
    assert {"Madrid.", "你好！我是一个助手 🤖"} <= texts(store)
    again = import_file(store, tmp_path / "kto_ds")
    assert again.added.feedback == 0 and again.accounting()["already_stored"] == 5


def test_dataset_dict_all_splits_or_one(store, tmp_path):
    datasets = pytest.importorskip("datasets")
    prefs = [r for r in rows("preference.jsonl") if isinstance(r["prompt"], str)]  # one column type per split
    folder = tmp_path / "prefs"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(prefs[:-1]), "test": datasets.Dataset.from_list(prefs[-1:])}
    ).save_to_disk(str(folder))
    one = import_file(store, folder, dataset="test-only", split="test")
    assert (one.format, one.records, one.added.rankings) == ("preference", 1, 1)
    every = import_file(store, folder, dataset="all")
    assert every.records == len(prefs) == 2
    assert "Se dice 谢谢 (xièxie) 🙏" in texts(store)
    with pytest.raises(InputError, match="no split 'validation'; the folder has train, test"):
        import_file(store, folder, split="validation")


def test_parquet_shards_under_data_with_conversational_kto(store, tmp_path):
    conv = [r for r in rows("kto.jsonl") if not isinstance(r["prompt"], str)]
    (tmp_path / "pq" / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(conv[:2]), tmp_path / "pq" / "data" / "train-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(conv[2:]), tmp_path / "pq" / "data" / "train-00001-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(standard_kto()), tmp_path / "pq" / "data" / "test-00000-of-00001.parquet")
    report = import_file(store, tmp_path / "pq", dataset="pq", split="train")
    assert (report.format, report.records, report.added.feedback) == ("kto", 3, 3)
    msgs = {m for (m,) in store.con.execute("SELECT messages FROM prompts").fetchall()}
    assert any("Eres un asistente amable." in m and "vecino" in m for m in msgs)
    assert "To get to the other side! 🐔" in texts(store)
    assert import_file(store, tmp_path / "pq", dataset="pq").records == 3 + 5


def test_error_names_the_shard_and_row_database_unchanged(store, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    good = [{"prompt": "¿Hola?", "completion": "Hola 👋", "label": True}]
    bad = [*good, {"prompt": "¿Hola?", "completion": "Adiós", "label": None}]
    pq.write_table(pa.Table.from_pylist(good), folder / "part-0.parquet")
    pq.write_table(pa.Table.from_pylist(bad), folder / "part-1.parquet")
    before = store.counts()
    with pytest.raises(InputError) as e:
        import_file(store, folder, fmt="kto")
    assert e.value.file.endswith("part-1.parquet") and (e.value.line, e.value.field) == (2, "label")
    assert store.counts() == before


def test_not_a_dataset_folder(store, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a dataset folder"):
        import_file(store, tmp_path / "empty")
    with pytest.raises(InputError, match="--split picks a split of a dataset folder"):
        import_file(store, DATA / "kto.jsonl", split="train")


def test_cli_imports_a_folder_with_split(run_cli, store, tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(standard_kto())}).save_to_disk(str(folder))
    r = run_cli("import", folder, "--split", "train", "--dataset", "d")
    assert r.exit_code == 0, r.output
    assert "detected format: kto" in r.output and "4 feedback" in r.output
