"""The DuckDB-native import path for big `ranked` and `preference` JSON Lines files.

    report = import_jsonl(store, Path("rankings.jsonl.gz"), fmt="ranked", dataset="d", dry_run=False,
                          created_by="import:rankings.jsonl.gz", annotator="imported:rankings")

DuckDB reads the file itself (read_json with an explicit column spec, .gz too), the checks of
db.importers.preference run as SQL over every row, and the stage_* tables are filled in SQL; then
Store.commit_staged moves what is new inside one transaction, as the Python path does. Keys are computed
the same way (prompt key = db.hashing.SQL_USER_PROMPT_HASH, answer key = sha256(text), messages JSON as
json.dumps(..., ensure_ascii=False) writes it), so both paths store identical rows (tests/db/test_import.py).

The whole file is checked first, in one streaming pass that keeps no rows (read_json + aggregates). A file of
more than COMMIT_ROWS records is then committed in transactions of COMMIT_ROWS records each: DuckDB keeps a
transaction's new rows and index entries in memory until COMMIT, so one transaction over 1,000,000 rankings
(4M answers, 6M pairs) needed ~6 GiB, and chunks of 100,000 stay near 1.2 GiB (bench/pairs.py). Each chunk's
lines are copied to a temporary file that DuckDB reads, keys (sha256) and stages alone, so a chunk costs the
same wherever it is in the file; keying the whole file up front held all its text in temp tables that spilled
to disk. Every check runs before the first commit, so a bad file still changes nothing; only a crash midway
(killed process, full disk) leaves the first chunks stored, and running the same import again adds the rest
(imports are idempotent). A dry run stays one transaction, rolled back, so its counts are exact.

Into an empty dataset, a file that names each prompt once holds nothing stored and no row twice: its chunks are
committed without the anti-joins and accounting joins against the growing tables (commit_staged's `fresh`), and
every record counts as added. Any other file takes the general path (write_staged, classify_records).

This path handles the common shape only: string prompts and answers, no repeated prompt without an
annotator (which the Python path numbers in file order), no `is_tie`, no prompt in the `trl` export's HH layout
(db.importers.preference reads it back as messages). Anything else, and any row that fails a check or
that DuckDB cannot parse, returns None: the caller then runs the Python path, which either imports the file
or stops at the first bad line with the precise file:line: field message.
"""

from __future__ import annotations

import gzip
import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa

from db.errors import InputError
from db.hashing import SQL_USER_PROMPT_HASH
from db.importers import ImportReport, write_staged
from db.importers.fields import MAX_FIELD_BYTES
from db.importers.reader import MAX_RECORD_BYTES
from db.staging import STAGE_SCHEMAS, RecordCounts, WriteCounts, commit_staged, timed
from db.store import Store

log = logging.getLogger(__name__)

COMMIT_ROWS = 100_000  # records per transaction (see the module docstring)
# Up to this size (of text) the file is parsed once and its rows kept in a temp table; above it, the rows would
# spill to disk under a 1GB memory limit, and reading each chunk again costs less (bench/pairs.py)
ONE_PASS_BYTES = 256 * 2**20

_COLUMNS = {
    "ranked": "{'prompt': 'JSON', 'responses': 'JSON', 'ranks': 'JSON', 'annotator': 'JSON', 'gold': 'JSON'}",
    "preference": "{'prompt': 'JSON', 'chosen': 'JSON', 'rejected': 'JSON', 'annotator': 'JSON', 'is_tie': 'JSON'}",
}

# One row per record: rn (file order), p (prompt text), answers (VARCHAR[]), ranks (BIGINT[]), who (annotator or
# NULL), ok (every check of the Python path passed). Type checks come first so the casts never see bad types.
_ROWS = {
    "ranked": """
        SELECT rn, p, who,
               CASE WHEN types_ok THEN json_transform(responses, '["VARCHAR"]') END AS answers,
               CASE WHEN types_ok THEN json_transform(ranks, '["BIGINT"]') END AS ranks, types_ok
        FROM (SELECT rn, prompt ->> '$' AS p, annotator, responses, ranks,
                     CASE WHEN json_type(annotator) = 'VARCHAR' THEN annotator ->> '$' END AS who,
                     coalesce(json_type(prompt) = 'VARCHAR'
                              AND json_type(responses) = 'ARRAY' AND json_type(ranks) = 'ARRAY'
                              AND json_array_length(responses) >= 2
                              AND json_array_length(ranks) = json_array_length(responses)
                              AND list_bool_and(list_transform(json_type(responses, '$[*]'), lambda t: t = 'VARCHAR'))
                              AND list_bool_and(list_transform(json_type(ranks, '$[*]'),
                                                               lambda t: t IN ('UBIGINT', 'BIGINT')))
                              AND (annotator IS NULL OR json_type(annotator) = 'VARCHAR')
                              -- gold records are read by the Python path (db.importers.gold)
                              AND coalesce(CAST(gold AS VARCHAR), 'null') IN ('null', 'false'), false) AS types_ok
              FROM ({raw}))""",
    "preference": """
        SELECT rn, prompt ->> '$' AS p,
               CASE WHEN json_type(annotator) = 'VARCHAR' THEN annotator ->> '$' END AS who,
               [chosen ->> '$', rejected ->> '$'] AS answers, [1, 2]::BIGINT[] AS ranks,
               coalesce(json_type(prompt) = 'VARCHAR' AND json_type(chosen) = 'VARCHAR'
                        AND json_type(rejected) = 'VARCHAR'
                        AND (annotator IS NULL OR json_type(annotator) = 'VARCHAR')
                        -- ties and prompts in the trl export's HH layout are read by the Python path
                        AND coalesce(CAST(is_tie AS VARCHAR), 'null') IN ('null', 'false')
                        AND NOT (suffix(prompt ->> '$', chr(10) || chr(10) || 'Assistant:')
                                 AND contains(prompt ->> '$', chr(10) || chr(10) || 'Human: ')), false) AS types_ok
        FROM ({raw})""",
}

# One streaming pass over the whole file: every check, and what the totals need, without keeping the rows
_CHECK = f"""
    SELECT count(*) FILTER (WHERE NOT (types_ok AND strlen(p) BETWEEN 1 AND {MAX_FIELD_BYTES}
                   AND (who IS NULL OR strlen(who) BETWEEN 1 AND {MAX_FIELD_BYTES})
                   AND list_bool_and(list_transform(answers, lambda a: strlen(a) <= {MAX_FIELD_BYTES}))
                   AND len(list_distinct(answers)) = len(answers)
                   AND list_bool_and(list_transform(ranks, lambda r: r BETWEEN 1 AND len(answers))))),
           count(*) - count(DISTINCT (p, who)), count(*), count(DISTINCT p), sum(len(answers)),
           sum(len(answers) * (len(answers) - 1) // 2)
    FROM ({{rows}})"""
# distinct (prompt, answer) pairs: only needed when a prompt comes back in the file
_GENERATIONS = "SELECT count(*) FROM (SELECT DISTINCT p, unnest(answers) FROM ({rows}))"
_RAW = """SELECT row_number() OVER () AS rn, *
          FROM read_json({path}, format = 'newline_delimited', records = true, columns = {columns},
                         maximum_object_size = {size})"""


def import_jsonl(
    store: Store, path: Path, *, fmt: str, dataset: str, dry_run: bool, created_by: str, annotator: str
) -> ImportReport | None:
    """Import a ranked/preference JSON Lines file in SQL; None when the Python path must take over."""
    if fmt not in _COLUMNS:
        raise InputError(f"the DuckDB import path reads ranked and preference files, not {fmt}", file=str(path))
    t0 = time.perf_counter()
    con = store.con
    with store._lock:
        try:
            return _run(store, con, path, fmt, dataset, dry_run, created_by, annotator, t0)
        finally:
            for name in STAGE_SCHEMAS:
                if name != "stage_items":
                    con.execute(f"DROP VIEW IF EXISTS temp.{name}")
            for name in ("fi_rows", "fi_keyed", "fi_answers", "stage_items"):
                con.execute(f"DROP TABLE IF EXISTS temp.{name}")


def _rows_sql(fmt: str, path: Path) -> str:
    # a literal, not a parameter: the same text is read by several statements
    raw = _RAW.format(path=_quote(str(path)), columns=_COLUMNS[fmt], size=MAX_RECORD_BYTES)
    return _ROWS[fmt].format(raw=raw)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _run(store, con, path, fmt, dataset, dry_run, created_by, annotator, t0) -> ImportReport | None:
    # a file that fits in memory is parsed once, into fi_rows; a bigger one is read again chunk by chunk
    size = path.stat().st_size * (4 if path.name.endswith(".gz") else 1)
    source = _rows_sql(fmt, path)
    try:
        with timed("read+check"):
            if size <= ONE_PASS_BYTES:
                con.execute(f"CREATE OR REPLACE TEMP TABLE fi_rows AS {source}")
                source = "SELECT * FROM fi_rows"
            check = con.execute(_CHECK.format(rows=source)).fetchall()[0]
    except duckdb.Error as e:  # not parseable as we asked (broken JSON, bad encoding, a non-object line)
        log.info("%s: DuckDB could not read it (%s)", path, str(e).splitlines()[0])
        return None
    bad, repeated, records, prompts, answers, pairs = check
    # a repeated (prompt, annotator) is an error when named and, unnamed, a "#2" ranking numbered in file order
    if bad or repeated or not records:
        log.info("%s: %s bad rows, %s repeated (prompt, annotator)", path, bad, repeated)
        return None
    log.info("%s: read and checked %s records in %.1fs", path, records, time.perf_counter() - t0)
    # Each prompt once and none stored in the dataset: nothing of the file is stored yet, and no chunk repeats
    # a row of an earlier one, so every record adds its ranking and the commit needs no anti-join.
    fresh = prompts == records and not _has_prompts(con, dataset)
    if fresh:
        generations = answers  # the answers of a ranking differ (checked)
    else:
        with timed("key/hash"):
            generations = con.execute(_GENERATIONS.format(rows=source)).fetchall()[0][0]
    # no two records share a (prompt, annotator) (checked): a ranking per record
    totals = {"prompts": prompts, "generations": generations, "rankings": records, "pairs": int(pairs)}
    totals |= {"ratings": 0, "feedback": 0, "examples": 0}
    added, outcome, done = WriteCounts(), RecordCounts(), 0
    step = records if dry_run else COMMIT_ROWS
    if size <= ONE_PASS_BYTES:  # numbered as _key_chunk expects: from 1 in the chunk
        chunks = (
            f"SELECT rn - {lo} AS rn, * EXCLUDE (rn) FROM fi_rows WHERE rn > {lo} AND rn <= {lo + step}"
            for lo in range(0, records, step)
        )
    else:
        chunks = (_rows_sql(fmt, part) for part in _chunks(path, records, step))
    for rows in chunks:
        with timed("key/hash"):
            n = _key_chunk(con, rows, annotator, done)
        with timed("stage tables"):
            _stage_chunk(con, path)
        # no two records share a (prompt, annotator) (checked), so no record of a later chunk is merged into one of
        # an earlier chunk: the per-chunk outcomes add up to the file's
        with timed("write (classify + commit + COMMIT)"):
            counts, chunk_outcome = _write(store, dataset, created_by, dry_run, totals, n if fresh else None)
        added += counts
        outcome += chunk_outcome
        done += n
        log.info("%s: committed %s records in %.1fs", path, done, time.perf_counter() - t0)
    return ImportReport(
        file=str(path),
        format=fmt,
        engine="duckdb",
        dry_run=dry_run,
        records=records,
        added=added,
        in_file=totals,
        outcome=outcome,
    )


def _has_prompts(con, dataset: str) -> bool:
    return con.execute(
        "SELECT EXISTS (SELECT 1 FROM prompts p JOIN datasets d ON d.id = p.dataset_id WHERE d.name = ?)", [dataset]
    ).fetchall()[0][0]


def _chunks(path: Path, records: int, step: int) -> Iterator[Path]:
    """The file itself when it is one chunk, else its lines `step` records at a time, each in a temporary file
    (decompressed) that DuckDB reads alone: a chunk costs the same wherever it is in the file."""
    if records <= step:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="preflab-import-") as tmp, _open(path) as f:
        part = Path(tmp) / "chunk.jsonl"
        while True:
            n = 0
            with part.open("wb") as out:
                for line in f:
                    out.write(line)
                    n += bool(line.strip())
                    if n == step:
                        break
            if not n:
                return
            yield part


def _open(path: Path):
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")


class _Rollback(Exception):
    def __init__(self, counts: WriteCounts):
        self.counts = counts


def _write(store, dataset, created_by, dry_run, totals, fresh_records) -> tuple[WriteCounts, RecordCounts]:
    """Commit the staged chunk; `fresh_records` (the chunk's records, for a fresh import) skips the accounting
    joins: every such record adds its ranking."""
    if fresh_records is None:
        counts, _, outcome = write_staged(store, dataset, created_by=created_by, dry_run=dry_run, totals=totals)
        return counts, outcome
    try:
        with store.transaction():
            dataset_id = store.ensure_dataset(dataset, created_by=created_by)
            counts = commit_staged(store, dataset_id, created_by=created_by, fresh=True)
            if dry_run:
                raise _Rollback(counts)
    except _Rollback as r:
        counts = r.counts
    return counts, RecordCounts(added=fresh_records)


_SQL_TYPES = {
    pa.string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
}


def _stage_view(con, name: str, source: str, given: dict[str, str], params: list | None = None) -> None:
    """stage_* as a temp view with exactly STAGE_SCHEMAS' columns: `given` expressions, NULL for the rest."""
    cols = ", ".join(
        f"{given[f.name]} AS {f.name}" if f.name in given else f"NULL::{_SQL_TYPES[f.type]} AS {f.name}"
        for f in STAGE_SCHEMAS[name]
    )
    con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {cols} FROM {source}", params or [])


def _key_chunk(con, rows: str, annotator: str, done: int) -> int:
    """fi_keyed (a row per record of the chunk, numbered in the file after the `done` before it, with its keys)
    and fi_answers (a row per answer); returns the chunk's records."""
    key = SQL_USER_PROMPT_HASH.format(col="p")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE fi_keyed AS
            SELECT *, sha256(prompt_key || ':' || array_to_string(
                       list_transform(range(len(answers)), lambda i: gen_keys[i + 1] || '=' || ranks[i + 1]),
                       ',')) AS source_record
            FROM (SELECT rn + {int(done)} AS rn, p, {key} AS prompt_key, coalesce(who, ?) AS who, answers, ranks,
                         list_transform(answers, lambda a: sha256(a)) AS gen_keys FROM ({rows}))""",
        [annotator],
    )
    # each answer's sha256 is computed once, in fi_keyed, for its source record and its gen_key
    con.execute(
        """CREATE OR REPLACE TEMP TABLE fi_answers AS
           SELECT rn, prompt_key, unnest(answers) AS text, unnest(gen_keys) AS gen_key, unnest(ranks) AS rank,
                  unnest(range(len(answers))) AS position
           FROM fi_keyed"""
    )
    return con.execute("SELECT count(*) FROM fi_keyed").fetchall()[0][0]


def _stage_chunk(con, path: Path) -> None:
    """The stage_* relations the Python path would stage for the chunk: views over the keyed tables, and
    stage_items as a table."""
    keyed, answers = "fi_keyed", "fi_answers"
    source = _quote(path.name)  # a literal: a view cannot hold a prepared parameter
    _stage_view(
        con,
        "stage_prompts",
        keyed,
        {
            "key": "prompt_key",
            "messages": """'[{"role": "user", "content": ' || to_json(p) || '}]'""",
            "source": source,
            "record": "rn",
        },
    )
    _stage_view(
        con,
        "stage_rankings",
        keyed,
        {
            "ranking_key": "rn::VARCHAR",
            "prompt_key": "prompt_key",
            "annotator": "who",
            "user_kind": "'imported'",
            "status": "'submitted'",
            "source": "'import'",
            "source_record": "source_record",
            "record": "rn",
        },
    )
    _stage_view(
        con,
        "stage_generations",
        answers,
        {"prompt_key": "prompt_key", "gen_key": "gen_key", "text": "text", "kind": "'imported'", "record": "rn"},
    )
    # items are joined on ranking_key: a table with the key computed once, not a view that recomputes it
    con.execute(
        "CREATE OR REPLACE TEMP TABLE stage_items AS SELECT rn::VARCHAR AS ranking_key, gen_key, "
        f"rank::INTEGER AS rank, position::INTEGER AS position FROM {answers}"
    )
    for name in ("stage_ratings", "stage_feedback", "stage_examples"):
        _stage_view(con, name, "fi_keyed WHERE false", {})
