"""The files of an export: one per split side, written under a temporary name and renamed when complete, the
snapshot id (content hash) and PATH.snapshot.json beside them, and LLaMA-Factory's dataset_info.json entry.

The snapshot id is the sha256 of the written file (with a split: of the lines "ROLE SHA256" of its files), also
stored in PATH.snapshot.json with the format, filters, counts and each file's sha256. A Parquet file also carries
the id in its key-value metadata (preflab.snapshot_id, with preflab.format, .split, .filters): as a file cannot
hold its own hash, its id is taken from the rows as written and the metadata added after, so for Parquet the
"sha256" of PATH.snapshot.json (the files as they are) differs from the id. db.export.sql says how DuckDB writes
the rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from db.errors import InputError
from db.export.config import ExportConfig
from db.export.sql import add_parquet_metadata, is_parquet, write_export

log = logging.getLogger(__name__)

KNOWN_SUFFIXES = (".jsonl.gz", ".json.gz", ".csv.gz", ".jsonl", ".json", ".csv", ".parquet")


@dataclass
class ExportResult:
    """What an export wrote: the snapshot id (content hash), row counts, and the files by role."""

    snapshot_id: str
    counts: dict
    paths: dict[str, Path]  # "all" or "train"/"test"; llamafactory adds "dataset_info"
    snapshot_path: Path

    @property
    def path(self) -> Path | None:
        """The data file when there is exactly one (no split)."""
        return self.paths.get("all")

    def as_dict(self) -> dict:
        return {
            "snapshot_id": self.snapshot_id,
            "counts": self.counts,
            "path": str(self.path) if self.path else None,
            "paths": {k: str(v) for k, v in self.paths.items()},
            "snapshot_path": str(self.snapshot_path),
        }


def split_paths(out: Path, fmt: str, splits: list[str]) -> dict[str, Path]:
    """File per split: OUT itself without a split, else OUT_train.EXT / OUT_test.EXT."""
    name = out.name
    ext = next((s for s in KNOWN_SUFFIXES if name.endswith(s)), None)
    if ext is None:  # no extension given: the format's own
        ext = ".parquet" if fmt == "parquet" else ".jsonl"
        name += ext
    if splits == ["all"]:
        return {"all": out.with_name(name)}
    stem = name[: -len(ext)]
    return {s: out.with_name(f"{stem}_{s}{ext}") for s in splits}


def export(store, config: ExportConfig | str, out: str | Path | None = None, **filters) -> ExportResult:
    """Write the export `config` describes to `out`; see db.export's docstring. Returns an ExportResult.

    `config` is an ExportConfig, or a format name with the filters as keywords, which builds one:
    export(store, "trl", out, dataset="d") is export(store, ExportConfig(format="trl", dataset="d"), out).
    """
    if isinstance(config, ExportConfig):
        if filters:
            raise TypeError(f"pass the filters in the ExportConfig, not as keywords ({', '.join(filters)})")
        cfg = config
    else:
        cfg = ExportConfig(format=config or "", **filters)
    if out is None:
        raise InputError("an export needs an output path", field="out")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    splits = ["train", "test"] if cfg.test_fraction > 0 else ["all"]
    paths = split_paths(out, cfg.format, splits)
    if cfg.format == "classification" and not any(
        str(p).endswith((".csv", ".csv.gz", ".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet"))
        for p in paths.values()
    ):
        raise InputError("classification exports end in .csv, .jsonl or .parquet", field="out")
    if cfg.format == "ratings" and not all(str(p).endswith((".jsonl", ".jsonl.gz")) for p in paths.values()):
        raise InputError("ratings exports are JSON Lines: end --out in .jsonl (or .jsonl.gz)", field="out")
    temps = {s: p.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{p.name}") for s, p in paths.items()}
    digests: dict[Path, str] = {}  # files hashed while they were written (chunked JSON Lines)
    try:
        with store.transaction():
            counts = write_export(store, cfg, temps, digests)
        file_digests = {s: digests.get(temps[s]) or file_digest(temps[s]) for s in splits}
        snapshot_id = snapshot_hash(file_digests)
        for s in splits:
            if is_parquet(temps[s], cfg.format):  # the id goes inside the file, so its digest is taken after
                metadata = {
                    "preflab.snapshot_id": snapshot_id,
                    "preflab.format": cfg.format,
                    "preflab.split": s,
                    "preflab.filters": json.dumps(cfg.filters(), ensure_ascii=False, sort_keys=True),
                }
                with store.transaction() as con:
                    add_parquet_metadata(con, temps[s], metadata)
                file_digests[s] = file_digest(temps[s])
        for s, tmp in temps.items():
            os.replace(tmp, paths[s])
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
    if cfg.format == "llamafactory":
        paths["dataset_info"] = _write_dataset_info(cfg, dict(paths), images=counts.pop("images", False))
    snapshot_path = (paths.get("all") or out).with_name((paths.get("all") or out).name + ".snapshot.json")
    meta = {
        "id": snapshot_id,
        "snapshot_id": snapshot_id,
        "format": cfg.format,
        "filters": cfg.filters(),
        "counts": counts,
        "files": {s: paths[s].name for s in splits},
        "sha256": file_digests,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    snapshot_path.write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    log.info("exported %s: %s, snapshot %s", cfg.format, counts, snapshot_id)
    return ExportResult(snapshot_id=snapshot_id, counts=counts, paths=paths, snapshot_path=snapshot_path)


def file_digest(path: Path) -> str:
    """sha256 hex of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def snapshot_hash(digests: dict[str, str]) -> str:
    """The snapshot id from the files' sha256: one file's own digest (`sha256sum FILE` shows it), or for a
    split the sha256 of the lines "ROLE DIGEST\n" in role order (test, train)."""
    if list(digests) == ["all"]:
        return digests["all"]
    return hashlib.sha256("".join(f"{role} {digests[role]}\n" for role in sorted(digests)).encode()).hexdigest()


def _write_dataset_info(cfg: ExportConfig, paths: dict[str, Path], *, images: bool = False) -> Path:
    """Add our entries to dataset_info.json beside the files (other entries in it are kept)."""
    folder = next(iter(paths.values())).parent
    info_path = folder / "dataset_info.json"
    info = {}
    if info_path.exists():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(f"{info_path} is not valid JSON ({e.msg}); fix or remove it") from None
    if cfg.layout == "alpaca":
        entry = {
            "ranking": True,
            "columns": {
                "prompt": "instruction",
                "query": "input",
                "chosen": "chosen",
                "rejected": "rejected",
                "system": "system",
                "history": "history",
            },
        }
    else:
        entry = {
            "formatting": "sharegpt",
            "ranking": True,
            "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "system": "system"},
        }
    if images:
        entry["columns"]["images"] = "images"
    for path in paths.values():
        name = path.name
        for ext in KNOWN_SUFFIXES:
            name = name.removesuffix(ext)
        info[name] = {"file_name": path.name, **entry}
    info_path.write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return info_path
