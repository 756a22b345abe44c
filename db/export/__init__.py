"""Exports: preference pairs, SFT data and labelled examples in the formats trainers read, with a snapshot id.

The package owns what leaves the database as training data, one module per step: `config` (what is asked
for: ExportConfig, FORMATS, the filters the CLI's options are built from), `sql` (how DuckDB streams the
rows into files) and `files` (export(): file names, temporary files renamed when complete, the snapshot id
and PATH.snapshot.json). It never turns the exported rows into Python objects, never leaves a half-written
file under its final name, and never imports a training library: alignment/ reads what it wrote.

    from db.export import export
    r = export(store, "trl", "out/prefs.jsonl", dataset="oasst-demo", split="test=0.1", seed=0)
    r.snapshot_id, r.counts, r.paths      # paths: {"train": out/prefs_train.jsonl, "test": out/prefs_test.jsonl}

Formats (one literal example of each in docs/formats.md):
    trl            {"prompt": str, "chosen": str, "rejected": str} per pair, HH-style text (the prompt ends on
                   "\\n\\nAssistant:", each answer starts with a space)
    trl-messages   {"prompt": [messages], "chosen": [{"role": "assistant", ...}], "rejected": [...]}
    llamafactory   LLaMA-Factory ranking data, --layout alpaca or sharegpt, plus its dataset_info.json entry
    sft            {"messages": [..., {"role": "assistant", "content": best answer]} per prompt
    classification {"text", "label"} as JSONL, or CSV when --out ends in .csv
    parquet        pairs with every provenance column
    ratings        {"prompt", "response", <aspect>: value, ..., "rationales"?, "annotator"} per rated answer

Pairs are the consensus pairs of db.consensus (one per answer pair of a prompt, majority direction, vote
counts, agreement), filtered by min_annotators / min_agreement / ties / source. Everything is done by DuckDB
(`COPY (SELECT ...) TO`, in db.export.sql), streaming and in order, so millions of pairs never become Python
objects.

Split (--split test=0.1 --seed 0): a prompt goes to test when md5(content_hash:seed) mod 10^6 < 0.1 * 10^6,
so no prompt is on both sides, the same seed always gives the same split, and the same prompt lands on the
same side in every dataset. Files: OUT_train.EXT and OUT_test.EXT (OUT without its extension).
"""

from db.export.config import FORMATS, ExportConfig, filter_fields, parse_split
from db.export.files import KNOWN_SUFFIXES, ExportResult, export, file_digest, snapshot_hash, split_paths
from db.export.sql import PAIR_FORMATS, write_export

__all__ = [
    "FORMATS",
    "KNOWN_SUFFIXES",
    "PAIR_FORMATS",
    "ExportConfig",
    "ExportResult",
    "export",
    "file_digest",
    "filter_fields",
    "parse_split",
    "snapshot_hash",
    "split_paths",
    "write_export",
]
