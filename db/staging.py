"""The staging path of bulk writes: the stage_* relations, the rows that fill them, and the SQL that commits them.

An importer fills stage_prompts, stage_generations, stage_rankings (with each ranking's rationale and details),
stage_items, stage_ratings (aspect ratings of a ranking's answers), stage_feedback (binary feedback on one answer)
and stage_examples (from Python rows through `Batch` and Arrow, or straight from a file in SQL on the fast path,
db/importers/fastimport.py); `commit_staged` moves what is new into the real tables, resolving content hashes
to ids in SQL. Re-importing the same rows adds nothing.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import pyarrow as pa

log = logging.getLogger(__name__)


@contextmanager
def timed(stage: str):
    """Log how long a stage of a bulk write took (DEBUG, "stage <name> <seconds>s"; bench/pairs.py --stages)."""
    t0 = time.perf_counter()
    yield
    log.debug("stage %s %.3fs", stage, time.perf_counter() - t0)


STAGE_SCHEMAS: dict[str, pa.Schema] = {
    "stage_prompts": pa.schema(
        [
            ("key", pa.string()),
            ("messages", pa.string()),
            ("source", pa.string()),
            ("external_id", pa.string()),
            ("metadata", pa.string()),
            ("assets", pa.string()),
            ("record", pa.int64()),
        ]
    ),
    "stage_generations": pa.schema(
        [
            ("prompt_key", pa.string()),
            ("gen_key", pa.string()),
            ("text", pa.string()),
            ("kind", pa.string()),
            ("model", pa.string()),
            ("adapter", pa.string()),
            ("engine", pa.string()),
            ("params", pa.string()),
            ("seed", pa.int64()),
            ("prompt_tokens", pa.int32()),
            ("completion_tokens", pa.int32()),
            ("latency_ms", pa.float64()),
            ("finish_reason", pa.string()),
            ("metadata", pa.string()),
            ("record", pa.int64()),
        ]
    ),
    "stage_rankings": pa.schema(
        [
            ("ranking_key", pa.string()),
            ("prompt_key", pa.string()),
            ("annotator", pa.string()),
            ("user_kind", pa.string()),
            ("status", pa.string()),
            ("source", pa.string()),
            ("all_bad", pa.bool_()),
            ("skip_reason", pa.string()),
            ("flag_reason", pa.string()),
            ("comment", pa.string()),
            ("time_on_task_ms", pa.int64()),
            ("guideline_version", pa.int32()),
            ("source_record", pa.string()),
            ("rationale", pa.string()),
            ("metadata", pa.string()),
            ("record", pa.int64()),
        ]
    ),
    "stage_items": pa.schema(
        [("ranking_key", pa.string()), ("gen_key", pa.string()), ("rank", pa.int32()), ("position", pa.int32())]
    ),
    "stage_ratings": pa.schema(
        [
            ("ranking_key", pa.string()),
            ("gen_key", pa.string()),
            ("aspect", pa.string()),
            ("value", pa.float64()),
            ("rationale", pa.string()),
            ("metadata", pa.string()),
        ]
    ),
    "stage_feedback": pa.schema(
        [
            ("prompt_key", pa.string()),
            ("gen_key", pa.string()),
            ("annotator", pa.string()),
            ("user_kind", pa.string()),
            ("label", pa.bool_()),
            ("source", pa.string()),
            ("comment", pa.string()),
            ("source_record", pa.string()),
            ("record", pa.int64()),
        ]
    ),
    "stage_examples": pa.schema(
        [
            ("key", pa.string()),
            ("text", pa.string()),
            ("label", pa.string()),
            ("metadata", pa.string()),
            ("source", pa.string()),
            ("record", pa.int64()),
        ]
    ),
}


@dataclass
class Batch:
    """Rows for `Store.write_batch`, one dict per row with the keys of STAGE_SCHEMAS (missing keys are NULL).

    Keys tie rows together: a generation's prompt_key is its prompt's key (db.hashing.prompt_hash), its
    gen_key is db.hashing.text_hash(text); an item or a rating names its ranking by ranking_key and its answer by
    gen_key; feedback names its prompt by prompt_key and its answer by gen_key.
    """

    prompts: list[dict] = field(default_factory=list)
    generations: list[dict] = field(default_factory=list)
    rankings: list[dict] = field(default_factory=list)
    items: list[dict] = field(default_factory=list)
    ratings: list[dict] = field(default_factory=list)
    feedback: list[dict] = field(default_factory=list)
    examples: list[dict] = field(default_factory=list)

    LISTS = ("prompts", "generations", "rankings", "items", "ratings", "feedback", "examples")

    def tables(self) -> dict[str, pa.Table]:
        return {
            name: pa.Table.from_pylist(getattr(self, name.removeprefix("stage_")), schema=schema)
            for name, schema in STAGE_SCHEMAS.items()
        }


@dataclass
class WriteCounts:
    """What a write added (rows that were already stored are not counted)."""

    prompts: int = 0
    generations: int = 0
    rankings: int = 0
    pairs: int = 0
    ratings: int = 0
    feedback: int = 0
    examples: int = 0
    users: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)

    def __add__(self, other: WriteCounts) -> WriteCounts:  # the totals of writes made in several transactions
        return WriteCounts(**{name: value + getattr(other, name) for name, value in self.as_dict().items()})


def _x(c, stage: str, sql: str, params: list | None = None) -> int:
    """Run one statement of commit_staged, timed; an INSERT's row count (0 for other statements)."""
    with timed(stage):
        rows = c.execute(sql, params or []).fetchall()
    return rows[0][0] if rows and rows[0] else 0


_INSERT_USERS = """INSERT INTO users (name, role, kind, created_by)
    SELECT annotator, 'annotator', any_value(coalesce(user_kind, 'imported')), ?
    FROM (SELECT annotator, user_kind FROM stage_rankings
          UNION ALL SELECT annotator, user_kind FROM stage_feedback) s
    WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.name = s.annotator)
    GROUP BY annotator"""
_INSERT_GENERATIONS = """INSERT INTO generations (prompt_id, text, content_hash, kind, model, adapter, engine, params,
                             seed, prompt_tokens, completion_tokens, latency_ms, finish_reason, metadata, created_by)
    SELECT p.id, g.text, g.gen_key, coalesce(g.kind, 'model'), g.model, g.adapter, g.engine, g.params, g.seed,
           g.prompt_tokens, g.completion_tokens, g.latency_ms, g.finish_reason, g.metadata, ?
    FROM (SELECT DISTINCT ON (prompt_key, gen_key) * FROM stage_generations) g {join}
    ORDER BY p.id"""
_INSERT_ITEMS = """INSERT INTO ranking_items (ranking_id, generation_id, rank, position)
    SELECT DISTINCT ON (r.id, g.id) r.id, g.id, i.rank, i.position
    FROM new_rankings r JOIN stage_items i ON i.ranking_key = r.ranking_key
    JOIN {generations} g ON g.prompt_id = r.prompt_id AND g.content_hash = i.gen_key"""
_INSERT_RANKINGS = """INSERT INTO rankings (id, prompt_id, user_id, status, source, all_bad, skip_reason, flag_reason,
                          comment, time_on_task_ms, guideline_version, created_by, source_record)
    SELECT id, prompt_id, user_id, coalesce(status, 'submitted'), coalesce(source, 'import'),
           coalesce(all_bad, false), skip_reason, flag_reason, comment, time_on_task_ms,
           guideline_version, ?, coalesce(source_record, '')
    FROM new_rankings ORDER BY id"""


def commit_staged(store, dataset_id: int, *, created_by: str, fresh: bool = False) -> WriteCounts:
    """Move new rows from the stage_* relations into the real tables. Call inside `transaction()`.

    Rows already stored (same content hash; for a ranking, same prompt, annotator and source record) are left
    alone, so a second import of the same data adds nothing. Duplicates within the staged rows are dropped with
    DISTINCT ON (2.4x faster than the equivalent row_number() window on 400k generations, bench/pairs.py).

    `fresh`: the caller knows that none of the staged prompts is stored in the dataset yet (an import into an
    empty dataset whose file names each prompt once, committed in chunks): the anti-joins against the stored
    tables are skipped and the new rows are joined to each other, not to the growing tables.
    """
    c = store.con
    n = _commit_fresh(c, dataset_id, created_by) if fresh else _commit_new(c, dataset_id, created_by)
    _x(
        c,
        "commit: notes",
        """INSERT INTO ranking_notes (ranking_id, rationale, metadata)
           SELECT id, rationale, metadata FROM new_rankings WHERE rationale IS NOT NULL OR metadata IS NOT NULL""",
    )
    n.ratings = _x(
        c,
        "commit: ratings",
        """INSERT INTO ratings (ranking_id, generation_id, aspect, value, rationale, metadata)
           SELECT DISTINCT ON (r.id, g.id, s.aspect) r.id, g.id, s.aspect, s.value, s.rationale, s.metadata
           FROM new_rankings r
           JOIN stage_ratings s ON s.ranking_key = r.ranking_key
           JOIN generations g ON g.prompt_id = r.prompt_id AND g.content_hash = s.gen_key""",
    )
    with timed("commit: pairs"):
        n.pairs = store._derive_pairs_for("SELECT id FROM new_rankings")
    for name in ("new_rankings", "new_prompts", "new_generations"):
        c.execute(f"DROP TABLE IF EXISTS {name}")
    n.feedback = _x(
        c,
        "commit: feedback",
        """INSERT INTO feedback (prompt_id, generation_id, user_id, label, source, comment, source_record, created_by)
           SELECT DISTINCT ON (g.id, u.id, coalesce(s.source_record, ''))
                  p.id, g.id, u.id, s.label, coalesce(s.source, 'import'), s.comment, coalesce(s.source_record, ''), ?
           FROM stage_feedback s
           JOIN prompts p ON p.dataset_id = ? AND p.content_hash = s.prompt_key
           JOIN generations g ON g.prompt_id = p.id AND g.content_hash = s.gen_key
           JOIN users u ON u.name = s.annotator
           WHERE NOT EXISTS (SELECT 1 FROM feedback f WHERE f.generation_id = g.id AND f.user_id = u.id
                                                      AND f.source_record = coalesce(s.source_record, ''))
           ORDER BY g.id, u.id, coalesce(s.source_record, ''), s.record""",
        [created_by, dataset_id],
    )
    n.examples = _x(
        c,
        "commit: examples",
        """INSERT INTO examples (dataset_id, text, label, content_hash, metadata, source, created_by)
           SELECT ?, s.text, s.label, s.key, s.metadata, s.source, ?
           FROM (SELECT DISTINCT ON (key) * FROM stage_examples) s
           WHERE NOT EXISTS (SELECT 1 FROM examples e WHERE e.dataset_id = ? AND e.content_hash = s.key)""",
        [dataset_id, created_by, dataset_id],
    )
    return n


def _commit_new(c, dataset_id: int, created_by: str) -> WriteCounts:
    """commit_staged's prompts, generations, users, rankings and items: what is not stored yet."""
    n = WriteCounts()
    n.prompts = _x(
        c,
        "commit: prompts",
        """INSERT INTO prompts (dataset_id, messages, content_hash, source, external_id, metadata, assets,
                                created_by)
           SELECT ?, s.messages, s.key, s.source, s.external_id, s.metadata, s.assets, ?
           FROM (SELECT DISTINCT ON (key) * FROM stage_prompts) s
           WHERE NOT EXISTS (SELECT 1 FROM prompts p WHERE p.dataset_id = ? AND p.content_hash = s.key)""",
        [dataset_id, created_by, dataset_id],
    )
    join = f"""JOIN prompts p ON p.dataset_id = {int(dataset_id)} AND p.content_hash = g.prompt_key
               WHERE NOT EXISTS (SELECT 1 FROM generations x
                                 WHERE x.prompt_id = p.id AND x.content_hash = g.gen_key)"""
    n.generations = _x(c, "commit: generations", _INSERT_GENERATIONS.format(join=join), [created_by])
    n.users = _x(c, "commit: users", _INSERT_USERS, [created_by])
    # New rankings get ids from the sequence; remember them so items and pairs attach to the right rows.
    _x(
        c,
        "commit: new rankings",
        """CREATE OR REPLACE TEMP TABLE new_rankings AS
           SELECT nextval('seq_rankings') AS id, s.*, p.id AS prompt_id, u.id AS user_id
           FROM (SELECT DISTINCT ON (ranking_key) * FROM stage_rankings) s
           JOIN prompts p ON p.dataset_id = ? AND p.content_hash = s.prompt_key
           JOIN users u ON u.name = s.annotator
           WHERE NOT EXISTS (SELECT 1 FROM rankings r WHERE r.prompt_id = p.id AND r.user_id = u.id
                                                     AND r.source_record = coalesce(s.source_record, ''))
           QUALIFY row_number() OVER (PARTITION BY p.id, u.id, coalesce(s.source_record, '')) = 1""",
        [dataset_id],
    )
    n.rankings = _x(c, "commit: rankings", _INSERT_RANKINGS, [created_by])
    _x(c, "commit: items", _INSERT_ITEMS.format(generations="generations"))
    return n


def _commit_fresh(c, dataset_id: int, created_by: str) -> WriteCounts:
    """commit_staged when no staged prompt is stored: ids are drawn into chunk-sized temp tables (new_prompts,
    new_generations, new_rankings) and every join reads those, so a chunk costs the same however much the
    earlier chunks stored."""
    n = WriteCounts()
    _x(
        c,
        "commit: prompts",
        "CREATE OR REPLACE TEMP TABLE new_prompts AS SELECT nextval('seq_prompts') AS id, s.* "
        "FROM (SELECT DISTINCT ON (key) * FROM stage_prompts) s",
    )
    n.prompts = _x(
        c,
        "commit: prompts",
        """INSERT INTO prompts (id, dataset_id, messages, content_hash, source, external_id, metadata, assets,
                                created_by)
           SELECT id, ?, messages, key, source, external_id, metadata, assets, ? FROM new_prompts ORDER BY id""",
        [dataset_id, created_by],
    )
    join = "JOIN new_prompts p ON p.key = g.prompt_key"
    n.generations = _x(c, "commit: generations", _INSERT_GENERATIONS.format(join=join), [created_by])
    # ids drawn by the INSERT, in the same order as commit_staged's (a tie's pair is ordered by answer id); a
    # constant lower bound lets the scan skip the row groups of earlier chunks
    low = c.execute("SELECT coalesce(min(id), 0) FROM new_prompts").fetchall()[0][0]
    _x(
        c,
        "commit: generations",
        "CREATE OR REPLACE TEMP TABLE new_generations AS "
        "SELECT id, prompt_id, content_hash FROM generations WHERE prompt_id >= ?",
        [low],
    )
    n.users = _x(c, "commit: users", _INSERT_USERS, [created_by])
    _x(
        c,
        "commit: new rankings",
        """CREATE OR REPLACE TEMP TABLE new_rankings AS
           SELECT nextval('seq_rankings') AS id, s.*, p.id AS prompt_id, u.id AS user_id
           FROM (SELECT DISTINCT ON (ranking_key) * FROM stage_rankings) s
           JOIN new_prompts p ON p.key = s.prompt_key JOIN users u ON u.name = s.annotator
           QUALIFY row_number() OVER (PARTITION BY p.id, u.id, coalesce(s.source_record, '')) = 1""",
    )
    n.rankings = _x(c, "commit: rankings", _INSERT_RANKINGS, [created_by])
    _x(c, "commit: items", _INSERT_ITEMS.format(generations="new_generations"))
    return n


# Each staged row is new, stored (its twin is in the database) or a repeat of an earlier record's new row. A record
# with a new row of its own added something; one whose rows are all stored or repeats was merged into an earlier
# record of the file when any is a repeat, and was already stored otherwise.
_CLASSIFY_SQL = """
    WITH staged AS (
        SELECT s.record, 'p:' || s.key AS k, p.id IS NOT NULL AS stored
        FROM stage_prompts s LEFT JOIN prompts p ON p.dataset_id = $1 AND p.content_hash = s.key
        UNION ALL
        SELECT s.record, 'g:' || s.prompt_key || ':' || s.gen_key, g.id IS NOT NULL
        FROM stage_generations s
        LEFT JOIN prompts p ON p.dataset_id = $1 AND p.content_hash = s.prompt_key
        LEFT JOIN generations g ON g.prompt_id = p.id AND g.content_hash = s.gen_key
        UNION ALL
        SELECT s.record, 'r:' || s.prompt_key || ':' || s.annotator || ':' || coalesce(s.source_record, ''),
               r.id IS NOT NULL
        FROM stage_rankings s
        LEFT JOIN prompts p ON p.dataset_id = $1 AND p.content_hash = s.prompt_key
        LEFT JOIN users u ON u.name = s.annotator
        LEFT JOIN rankings r ON r.prompt_id = p.id AND r.user_id = u.id
                                AND r.source_record = coalesce(s.source_record, '')
        UNION ALL
        SELECT s.record, 'f:' || s.prompt_key || ':' || s.gen_key || ':' || s.annotator || ':'
                         || coalesce(s.source_record, ''), f.id IS NOT NULL
        FROM stage_feedback s
        LEFT JOIN prompts p ON p.dataset_id = $1 AND p.content_hash = s.prompt_key
        LEFT JOIN generations g ON g.prompt_id = p.id AND g.content_hash = s.gen_key
        LEFT JOIN users u ON u.name = s.annotator
        LEFT JOIN feedback f ON f.generation_id = g.id AND f.user_id = u.id
                                AND f.source_record = coalesce(s.source_record, '')
        UNION ALL
        SELECT s.record, 'e:' || s.key, e.id IS NOT NULL
        FROM stage_examples s LEFT JOIN examples e ON e.dataset_id = $1 AND e.content_hash = s.key
    ),
    marked AS (SELECT record, stored, record = min(record) OVER (PARTITION BY k) AS first FROM staged
               WHERE record IS NOT NULL),
    per_record AS (SELECT bool_or(NOT stored AND first) AS added, bool_or(NOT stored) AS repeat
                   FROM marked GROUP BY record)
    SELECT count(*) FILTER (WHERE added), count(*) FILTER (WHERE repeat AND NOT added),
           count(*) FILTER (WHERE NOT repeat)
    FROM per_record"""


@dataclass
class RecordCounts:
    """What became of each record of a file that staged rows: it added something, its rows were all merged into
    an earlier record of the file (the same ranking twice), or they were all stored already."""

    added: int = 0
    merged: int = 0
    already_stored: int = 0

    def __add__(self, other: RecordCounts) -> RecordCounts:
        return RecordCounts(**{name: value + getattr(other, name) for name, value in self.__dict__.items()})


def classify_records(store, dataset_id: int) -> RecordCounts:
    """Sort the records behind the stage_* rows (their `record` column) into added, merged and already stored.
    Call inside `transaction()` before `commit_staged`, which makes every new row stored."""
    with timed("classify"):
        added, merged, stored = store.con.execute(_CLASSIFY_SQL, [dataset_id]).fetchall()[0]
    return RecordCounts(added=added, merged=merged, already_stored=stored)
