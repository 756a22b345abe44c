"""A Hugging Face dataset folder on disk as import input, read with pyarrow alone (no `datasets` needed).

    Dataset.save_to_disk(F)       F/dataset_info.json, F/state.json, F/data-00000-of-00001.arrow (Arrow IPC stream)
    DatasetDict.save_to_disk(F)   F/dataset_dict.json {"splits": [...]} and one such folder per split
    Parquet shards                F/**/*.parquet (the Hub's layout: data/train-00000-of-00002.parquet, ...)

    for rec in folder_records(Path("hh_kto"), split="train"):
        rec.file, rec.line, rec.value    # the shard, the 1-based row within it, the row as a dict

Every row of every shard (of every split, or of `split`) comes in order, record batch by record batch, so a
shard is never held as Python objects at once. Rows go through the same per-record converters as JSON Lines;
an error names the shard and the row number as the line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from db.errors import InputError
from db.importers.reader import BadRecord, Record

BATCH_ROWS = 1000  # Parquet rows per record batch (Arrow shards keep the batches they were written with)


def folder_shards(folder: Path, split: str | None = None) -> list[Path]:
    """The data files of a dataset folder, in order: Arrow shards of save_to_disk, else Parquet files."""
    if (folder / "dataset_dict.json").is_file():
        splits = _json(folder / "dataset_dict.json").get("splits") or []
        if split is not None and split not in splits:
            raise InputError(f"no split {split!r}; the folder has {', '.join(map(str, splits))}", file=str(folder))
        return [s for name in splits if split in (None, name) for s in _arrow_shards(folder / str(name))]
    if (folder / "state.json").is_file():
        if split is not None:
            raise InputError(f"--split {split}: this folder holds one dataset, not a DatasetDict", file=str(folder))
        return _arrow_shards(folder)
    shards = sorted(p for p in folder.rglob("*.parquet") if p.is_file())
    if split is not None:
        found = {part for p in shards for part in p.relative_to(folder).parts[:-1]} | {
            _split_of(p.name) for p in shards
        }
        shards = [p for p in shards if split in p.relative_to(folder).parts[:-1] or _split_of(p.name) == split]
        if not shards:
            raise InputError(
                f"no Parquet shard of split {split!r} (found {', '.join(sorted(found))})", file=str(folder)
            )
    if not shards:
        raise InputError(
            "not a dataset folder: expected save_to_disk output (state.json and data-*.arrow, or dataset_dict.json) "
            "or *.parquet files",
            file=str(folder),
        )
    return shards


def folder_records(folder: Path, split: str | None = None) -> Iterator[Record | BadRecord]:
    """Every row of the folder's shards as a Record naming its shard (`file`) and 1-based row (`line`)."""
    for shard in folder_shards(folder, split):
        row = 0
        try:
            for batch in _batches(shard):
                for value in batch.to_pylist():
                    row += 1
                    yield Record(row, value, file=shard)
        except (pa.ArrowException, OSError) as e:  # a broken or truncated shard
            raise InputError(f"cannot read this shard ({e})", file=str(shard), line=row + 1) from None


def _batches(shard: Path) -> Iterator[pa.RecordBatch]:
    if shard.suffix == ".parquet":
        yield from pq.ParquetFile(shard).iter_batches(batch_size=BATCH_ROWS)
        return
    with pa.memory_map(str(shard)) as source:
        try:
            reader = pa.ipc.open_stream(source)  # what save_to_disk writes
        except pa.ArrowInvalid:
            source.seek(0)
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)
            return
        yield from reader


def _arrow_shards(folder: Path) -> list[Path]:
    state = folder / "state.json"
    if not state.is_file():
        raise InputError("not a save_to_disk folder (no state.json)", file=str(folder))
    root = folder.resolve()
    shards = []
    for entry in _json(state).get("_data_files") or []:
        path = folder / str(entry.get("filename", ""))
        if root not in path.resolve().parents or not path.is_file():  # names come from the file: stay inside
            raise InputError(f"state.json names a data file that is not in the folder: {entry}", file=str(state))
        shards.append(path)
    return shards or sorted(folder.glob("data-*.arrow"))


def _split_of(name: str) -> str:
    """'train-00000-of-00002.parquet' -> 'train'."""
    return name.split("-")[0].removesuffix(".parquet")


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read it as JSON ({e})", file=str(path)) from None
    if not isinstance(value, dict):
        raise InputError("expected a JSON object", file=str(path))
    return value
