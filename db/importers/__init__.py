"""Import files into the store: `import_file(store, path, fmt="auto")`. The CLI is serving/cli/imports.py.

A file is read as a stream of records (db.importers.reader), each record is checked and turned into staging
rows by its format's converter (one module per family: sft, preference, oasst, nectar, arena_conversations, kto,
shp, ultrafeedback, helpsteer; a format whose rankings span records also has a FINISH step), and the rows are
written in ONE transaction after the whole file passed: a bad file changes nothing. Every error names file, line
and field. A Hugging Face dataset folder (save_to_disk output or Parquet shards) is read shard by shard
(db.importers.hf_folder) through the same converters. Large `ranked`/`preference` JSON Lines files take the
DuckDB-native path (db.importers.fastimport), which gives the same rows.

The package owns the file formats that come in and their checks: it fills the staging relations (stage_*)
and leaves the write to the Store (`Store.commit_staged`), so the rules of what is new and what is a
duplicate live in one place. It never keeps part of a file that failed a check, and never reads from the
network: a path comes in, rows go to the Store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from db.errors import InputError
from db.importers import (
    arena_conversations,
    helpsteer,
    hf_folder,
    kto,
    nectar,
    oasst,
    preference,
    sft,
    shp,
    ultrafeedback,
)
from db.importers import gold as gold_import
from db.importers.detect import format_of
from db.importers.fields import MAX_FIELD_BYTES, Ctx
from db.importers.reader import BadRecord, open_binary, read_records
from db.media import media_dir
from db.staging import Batch, RecordCounts, WriteCounts, classify_records
from db.store import Store

log = logging.getLogger(__name__)

__all__ = ["FORMATS", "MAX_FIELD_BYTES", "ImportReport", "detect_format", "import_file"]

FORMATS: dict[str, Callable] = {
    "alpaca": sft.alpaca,
    "messages": sft.messages_format,
    "sharegpt": sft.sharegpt,
    "classification": sft.classification,
    "preference": preference.preference,
    "implicit-preference": preference.implicit_preference,
    "ranked": preference.ranked,
    "oasst": oasst.oasst,
    "nectar": nectar.nectar,
    "arena-conversations": arena_conversations.arena_conversations,
    "shp": shp.shp,
    "kto": kto.kto,
    "ultrafeedback": ultrafeedback.ultrafeedback,
    "helpsteer": helpsteer.helpsteer,
    "prompts": sft.prompts,
}
FAST_FORMATS = ("ranked", "preference")
TOTAL_KEYS = ("prompts", "generations", "rankings", "pairs", "ratings", "feedback", "examples")
FAST_MIN_BYTES = 32 * 2**20  # below this the Python path is fast enough and gives the same rows
# why a valid record of a format can hold nothing to import (it is counted as skipped, with this reason)
EMPTY_REASONS = {
    "oasst": "no prompter message has two or more ranked assistant replies: nothing to rank",
    "arena-conversations": arena_conversations.EMPTY_REASON,
    "ultrafeedback": ultrafeedback.EMPTY_REASON,
}
# formats whose rows span records (helpsteer: the responses of one prompt, anywhere in the file, are one ranking):
# called once the file is read, they return the rows left, each already stamped with the record it counts for
FINISH: dict[str, Callable[[Ctx], Batch]] = {"helpsteer": helpsteer.finish}


@dataclass
class ImportReport:
    """What an import found and did. `added` counts new rows; `in_file - added` were already stored.

    Every record read is accounted for once (`accounting()`): it added something, it was already stored (a
    re-import), it was merged (the same ranking as an earlier record of the file), or it was skipped: invalid
    (`skipped`, with the error) or holding nothing to import (`empty`, its lines, with `empty_reason`).
    """

    file: str
    format: str
    detected: bool = False
    engine: str = "python"
    dry_run: bool = False
    records: int = 0
    skipped: list[InputError] = field(default_factory=list)
    added: WriteCounts = field(default_factory=WriteCounts)
    in_file: dict[str, int] = field(default_factory=dict)
    outcome: RecordCounts = field(default_factory=RecordCounts)
    empty: list[int] = field(default_factory=list)
    empty_reason: str = ""

    def accounting(self) -> dict[str, int]:
        """Records read, and what became of each: the five outcomes add up to `read`."""
        return {
            "read": self.records + len(self.skipped),
            "added": self.outcome.added,
            "already_stored": self.outcome.already_stored,
            "merged": self.outcome.merged,
            "skipped_invalid": len(self.skipped),
            "skipped_empty": len(self.empty),
        }

    def already_stored(self) -> dict[str, int]:
        added = self.added.as_dict()
        return {k: max(0, v - added.get(k, 0)) for k, v in self.in_file.items()}

    def as_dict(self) -> dict:
        """JSON-ready (the server's POST /api/import answers with this)."""
        added = self.added.as_dict()
        return {
            "file": self.file,
            "format": self.format,
            "detected": self.detected,
            "engine": self.engine,
            "dry_run": self.dry_run,
            "records": self.records,
            "added": {k: added[k] for k in TOTAL_KEYS},
            "already_stored": self.already_stored(),
            "skipped": [{"file": e.file, "line": e.line, "field": e.field, "message": str(e)} for e in self.skipped],
            "records_outcome": self.accounting(),
            "empty": {"lines": self.empty, "reason": self.empty_reason},
        }


# ---- detection ------------------------------------------------------------------------------------------


def base_name(path: Path) -> str:
    name = path.name
    return name[:-3] if name.endswith(".gz") else name


def detect_container(path: Path) -> str:
    """jsonl | json-array | csv | text, from the name and the first non-blank byte; hf-folder for a folder."""
    if path.is_dir():
        return "hf-folder"
    name = base_name(path).lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".txt"):
        return "text"
    with open_binary(path) as f:
        head = f.read(4096).lstrip(b" \t\r\n\xef\xbb\xbf")
    if head.startswith(b"["):
        return "json-array"
    if head.startswith(b"{") or name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    return "text"


def detect_format(path: Path, split: str | None = None) -> tuple[str, str]:
    """(format, container) of a file or dataset folder, from the keys of its first record."""
    container = detect_container(path)
    if container == "text":
        return "prompts", container
    first = next(iter(_records(path, container, split)), None)
    if first is None:
        raise InputError("the file is empty: no records to import", file=str(path))
    if isinstance(first, BadRecord):
        raise first
    rec = first.value
    if not isinstance(rec, dict):
        raise InputError(
            f"cannot detect the format: the first record is not a JSON object; pass --format ({', '.join(FORMATS)})",
            file=str(path),
            line=first.line,
        )
    fmt = format_of(rec)
    if fmt is None:
        raise InputError(
            f"cannot detect the format from the keys {sorted(rec)}; pass --format ({', '.join(FORMATS)})",
            file=str(path),
            line=first.line,
        )
    return fmt, container


def _records(path: Path, container: str, split: str | None, on_progress=None):
    if container == "hf-folder":
        return hf_folder.folder_records(path, split)
    if split is not None:
        raise InputError("--split picks a split of a dataset folder; this is a file", file=str(path))
    return read_records(path, container, on_progress=on_progress)


def _check_container(fmt: str, container: str, path: Path) -> None:
    if container == "csv" and fmt != "classification":
        raise InputError(f"CSV is read for the classification format only, not {fmt}; use JSON Lines", file=str(path))
    if container == "text" and fmt != "prompts":
        raise InputError(
            f"not JSON: a plain-text file is read for the prompts format only, not {fmt}", file=str(path), line=1
        )


# ---- rows -----------------------------------------------------------------------------------------------


class ChunkedBatch(Batch):
    """A Batch that moves its rows into Arrow chunks as it grows: columnar rows take far less memory."""

    FLUSH_ROWS = 50_000

    def __init__(self):
        super().__init__()
        self._chunks: dict[str, list[pa.Table]] = {}
        self._rows = 0

    def add(self, other: Batch, record: int | None = None) -> None:
        """Take `other`'s rows, stamped with the ordinal of the file record they came from."""
        for name in Batch.LISTS:
            rows = getattr(other, name)
            if record is not None and name not in ("items", "ratings"):
                for row in rows:
                    row["record"] = record
            getattr(self, name).extend(rows)
            self._rows += len(rows)
        if self._rows >= self.FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        for name, table in super().tables().items():
            if table.num_rows:
                self._chunks.setdefault(name, []).append(table)
        for name in Batch.LISTS:
            setattr(self, name, [])
        self._rows = 0

    def tables(self) -> dict[str, pa.Table]:
        self.flush()
        empty = Batch().tables()
        return {
            name: pa.concat_tables(self._chunks[name]) if name in self._chunks else table
            for name, table in empty.items()
        }


STAGED_TOTALS_SQL = """
    WITH r AS (SELECT ranking_key FROM stage_rankings
               QUALIFY row_number() OVER (PARTITION BY prompt_key, annotator, coalesce(source_record, '')
                                          ORDER BY ranking_key) = 1),
         k AS (SELECT count(DISTINCT gen_key) AS k FROM stage_items JOIN r USING (ranking_key) GROUP BY ranking_key)
    SELECT (SELECT count(DISTINCT key) FROM stage_prompts),
           (SELECT count(*) FROM (SELECT DISTINCT prompt_key, gen_key FROM stage_generations)),
           (SELECT count(*) FROM r),
           (SELECT coalesce(sum(k * (k - 1) // 2), 0) FROM k),
           (SELECT count(*) FROM (SELECT DISTINCT ranking_key, gen_key, aspect
                                  FROM stage_ratings JOIN r USING (ranking_key))),
           (SELECT count(*) FROM (SELECT DISTINCT prompt_key, gen_key, annotator, coalesce(source_record, '')
                                  FROM stage_feedback)),
           (SELECT count(DISTINCT key) FROM stage_examples)"""


class _Rollback(Exception):
    def __init__(self, counts: WriteCounts, outcome: RecordCounts):
        self.counts, self.outcome = counts, outcome


def write_staged(
    store: Store, dataset: str, *, created_by: str, dry_run: bool, totals: dict | None = None, gold: bool = False
) -> tuple[WriteCounts, dict, RecordCounts]:
    """Commit the stage_* relations visible on store.con (call under store._lock).

    Returns what was added, what the stage held (distinct rows; a ranking is one per prompt, annotator and
    source record, as the schema keeps it, so the same oasst tree twice counts once) and what became of each
    record. A dry run computes the same and rolls back.
    """
    if totals is None:
        totals = dict(zip(TOTAL_KEYS, store.con.execute(STAGED_TOTALS_SQL).fetchall()[0], strict=True))
    try:
        with store.transaction():
            dataset_id = store.ensure_dataset(dataset, created_by=created_by)
            outcome = classify_records(store, dataset_id)
            counts = store.commit_staged(dataset_id, created_by=created_by)
            if gold:  # a stage_gold relation is registered (db.importers.gold)
                gold_import.commit_gold(store.con, dataset_id, created_by)
            if dry_run:
                raise _Rollback(counts, outcome)
    except _Rollback as r:
        counts, outcome = r.counts, r.outcome
    return counts, totals, outcome


def write_tables(
    store: Store, dataset: str, tables: dict[str, pa.Table], *, created_by: str, dry_run: bool
) -> tuple[WriteCounts, dict, RecordCounts]:
    """write_staged over Arrow tables (the Python path's rows; "stage_gold" among them: gold items)."""
    with store._lock:
        for name, table in tables.items():
            store.con.register(name, table)
        try:
            return write_staged(store, dataset, created_by=created_by, dry_run=dry_run, gold="stage_gold" in tables)
        finally:  # after COMMIT or ROLLBACK: an aborted transaction refuses even unregister
            for name in tables:
                store.con.unregister(name)


# ---- the import -----------------------------------------------------------------------------------------


def default_annotator(path: Path) -> str:
    stem = base_name(path)
    for ext in (".jsonl", ".json", ".ndjson", ".csv", ".txt"):
        stem = stem.removesuffix(ext)
    return f"imported:{stem}"


def import_file(
    store: Store,
    path: str | Path,
    *,
    fmt: str = "auto",
    dataset: str | None = None,
    dry_run: bool = False,
    skip_invalid: bool = False,
    engine: str = "auto",
    on_progress: Callable[[int], None] | None = None,
    split: str | None = None,
) -> ImportReport:
    """Validate the whole file, then add what is new in one transaction (nothing at all on error); on the
    DuckDB path a file of more than fastimport.COMMIT_ROWS records is committed in transactions of that many.

    `engine`: "python", "duckdb" (db.importers.fastimport; ranked/preference JSON Lines only) or "auto" (duckdb for
    files over FAST_MIN_BYTES). `on_progress(bytes_read)` is called now and then, for a progress bar. `path` may
    be a Hugging Face dataset folder (db.importers.hf_folder): every split, or only `split`.
    """
    path = Path(path)
    if not path.is_file() and not path.is_dir():
        raise InputError("no such file or folder", file=str(path))
    if path.is_file() and path.stat().st_size == 0:
        raise InputError("the file is empty: no records to import", file=str(path))
    detected = fmt == "auto"
    if detected:
        fmt, container = detect_format(path, split)
    else:
        if fmt not in FORMATS:
            raise InputError(f"unknown format {fmt!r}; expected one of auto, {', '.join(FORMATS)}")
        container = detect_container(path)
    _check_container(fmt, container, path)
    dataset = dataset or default_annotator(path).removeprefix("imported:")
    created_by = f"import:{path.name}"

    if (
        engine != "python"
        and fmt in FAST_FORMATS
        and container == "jsonl"
        and (engine == "duckdb" or path.stat().st_size >= FAST_MIN_BYTES)
    ):
        from db.importers import fastimport  # here: it builds on this module's ImportReport and write_staged

        report = fastimport.import_jsonl(
            store,
            path,
            fmt=fmt,
            dataset=dataset,
            dry_run=dry_run,
            created_by=created_by,
            annotator=default_annotator(path),
        )
        if report is not None:
            report.detected = detected
            return report
        log.info("%s: the DuckDB path handed over to the Python path", path)

    report = ImportReport(file=str(path), format=fmt, detected=detected, dry_run=dry_run)
    convert = FORMATS[fmt]
    ctx = Ctx(
        path=path,
        source=path.name,
        annotator=default_annotator(path),
        media_dir=None if dry_run else media_dir(store),
    )
    batch = ChunkedBatch()
    for item in _records(path, container, split, on_progress):
        try:
            if isinstance(item, BadRecord):
                raise item
            ctx.line = item.line
            if item.file is not None:  # a dataset folder's shard: errors name it
                ctx.path = item.file
            ctx.state["record"] = report.records + 1  # the ordinal this record's rows are stamped with, if valid
            rows = convert(item.value, ctx)
            report.records += 1
            if rows.prompts or rows.examples:
                batch.add(rows, record=report.records)
            else:  # a valid record with nothing in it to import: say so rather than drop it unseen
                report.empty.append(item.line)
        except InputError as e:
            if not skip_invalid:
                hint = (
                    ""
                    if isinstance(e, BadRecord) and container == "json-array"
                    else " (--skip-invalid skips bad records)"
                )
                raise InputError(f"{e.reason}{hint}", file=e.file, line=e.line, field=e.field) from None
            report.skipped.append(e)
    if fmt in FINISH:
        batch.add(FINISH[fmt](ctx))
    if report.records == 0:
        why = f"all {len(report.skipped)} records are invalid" if report.skipped else "no records to import"
        raise InputError(f"nothing to import: {why}", file=str(path))
    if report.empty:
        report.empty_reason = EMPTY_REASONS.get(fmt, "the record holds nothing to import")
        log.info("%s: %s records hold nothing to import (%s)", path, len(report.empty), report.empty_reason)
    tables = batch.tables()
    if (gold := gold_import.table(ctx)) is not None:
        tables["stage_gold"] = gold
    report.added, report.in_file, report.outcome = write_tables(
        store, dataset, tables, created_by=created_by, dry_run=dry_run
    )
    return report
