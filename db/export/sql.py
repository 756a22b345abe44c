"""The SQL behind db.export: temporary tables of the pairs and prompts to write, and COPY statements per format.

db.export.files decides what to write and where (formats, filters, split, file names, snapshot id); this module
says how DuckDB writes it. Everything streams: rows go from the tables to the files without becoming
Python objects, and JSON Lines are written in prompt-id chunks so the sort that fixes the row order stays
small. Temporary tables (x_pairs, x_prompts, x_sft, x_feedback, x_ratings) live inside the export's transaction.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import duckdb

from db.consensus import consensus_pairs_sql, submitted_sql
from db.export.config import ExportConfig
from db.quality import prepare_consensus

PAIR_FORMATS = ("trl", "trl-messages", "llamafactory", "parquet")
FEEDBACK_FORMATS = ("kto", "kto-messages")
# --source for feedback: "human" is people's feedback (given in PrefLab, imported, thumbs in chat), as for rankings
FEEDBACK_SOURCES: dict[str, tuple[str, ...] | None] = {
    "human": ("human", "import", "chat"),
    "arena": ("arena",),
    "all": None,
}
LINE_FORMATS = ("ratings",)  # JSON Lines whose keys come from the data (one per aspect), built as text in SQL
SPLIT_BUCKETS = 1_000_000
CHUNK_PAIRS = 500_000  # pairs per COPY when writing JSON Lines: bounds the memory of the sort

MESSAGES_SQL = "list_transform(CAST(p.messages AS JSON[]), lambda m: {'role': m->>'role', 'content': m->>'content'})"
# The `trl` export is TRL's "standard" (plain text) preference format, which trainers tokenize as prompt + answer
# with nothing in between, so the prompt ends the way the conversation continues: Anthropic HH style,
# "\n\nHuman: ...\n\nAssistant:", and a non-empty answer starts with one space (" Cuatro"), as in HH-RLHF and in
# TRL's own example (prompt "The sky is", chosen " blue."). A leading system message is the text before the
# first "\n\nHuman:" (Anthropic's legacy prompt layout). The single-turn case (nearly every prompt) reads the
# JSON directly: parsing into a list costs 4x more. docs/formats.md shows the literal result.
_NL2 = "chr(10) || chr(10)"
TRL_ANSWER_SQL = "CASE WHEN {col} = '' THEN '' ELSE ' ' || {col} END"
TRL_PROMPT_SQL = f"""CASE WHEN json_array_length(p.messages) = 1 AND p.messages->>'$[0].role' = 'user'
                    THEN {_NL2} || 'Human: ' || coalesce(p.messages->>'$[0].content', '') || {_NL2} || 'Assistant:'
                    ELSE array_to_string(list_transform({MESSAGES_SQL}, lambda m, i: CASE
                             WHEN m.role = 'user' THEN {_NL2} || 'Human: ' || coalesce(m.content, '')
                             WHEN m.role = 'assistant' THEN {_NL2} || 'Assistant:'
                                  || {TRL_ANSWER_SQL.format(col="coalesce(m.content, '')")}
                             WHEN i = 1 THEN coalesce(m.content, '')
                             ELSE {_NL2} || coalesce(m.content, '') END), '') || {_NL2} || 'Assistant:' END"""
# parquet's prompt_text: the prompt for reading (a single user turn as it is, else "Role: content" blocks)
TEXT_SQL = f"""CASE WHEN json_array_length(p.messages) = 1 AND p.messages->>'$[0].role' = 'user'
                    THEN coalesce(p.messages->>'$[0].content', '')
                    ELSE array_to_string(list_transform({MESSAGES_SQL}, lambda m: upper(left(m.role, 1))
                         || substr(m.role, 2) || ': ' || coalesce(m.content, '')), chr(10) || chr(10)) END"""


def _copy(con, select: str, params: list, path: Path, fmt: str) -> int:
    name = path.name.removesuffix(".gz")
    if fmt in LINE_FORMATS:  # the SELECT builds each JSON line itself: write it as it is, unquoted
        options = "FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x01'"
    elif is_parquet(path, fmt):
        options = "FORMAT parquet, COMPRESSION zstd"
    elif name.endswith(".csv"):
        options = "FORMAT csv, HEADER true"
    else:
        options = "FORMAT json"
    target = f"${len(params) + 1}" if "$1" in select else "?"  # numbered and positional parameters do not mix
    return con.execute(f"COPY ({select}) TO {target} ({options})", [*params, str(path)]).fetchall()[0][0]


def is_parquet(path: Path, fmt: str) -> bool:
    """Whether `path` is written as Parquet (the parquet format, or a .parquet name for classification)."""
    return fmt == "parquet" or path.name.removesuffix(".gz").endswith(".parquet")


def add_parquet_metadata(con, path: Path, metadata: dict[str, str]) -> None:
    """Rewrite the Parquet file `path` with `metadata` in its footer's key-value metadata (what pyarrow shows as
    schema.metadata), so the file names its snapshot even apart from PATH.snapshot.json. DuckDB streams the
    rows from the old file into the new one, in order."""

    def quote(v: str) -> str:  # KV_METADATA takes literals; the values are ours (hex ids, names, JSON)
        return "'" + v.replace("'", "''") + "'"

    kv = ", ".join(f"{quote(k)}: {quote(v)}" for k, v in metadata.items())
    tmp = path.with_name(f".meta-{path.name}")
    try:
        con.execute(
            f"COPY (SELECT * FROM read_parquet(?)) TO ? (FORMAT parquet, COMPRESSION zstd, KV_METADATA {{{kv}}})",
            [str(path), str(tmp)],
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _prompts_table(con, cfg: ExportConfig, dataset_id: int | None, wanted: str) -> None:
    """x_prompts: the prompts in `wanted` (a SELECT of ids) with split side, and the renderings the format needs."""
    threshold = int(round(cfg.test_fraction * SPLIT_BUCKETS))
    columns = []
    if cfg.format in ("trl", "kto"):
        columns.append(f"{TRL_PROMPT_SQL} AS text")
    elif cfg.format == "parquet":
        columns.append(f"{TEXT_SQL} AS text")
    if cfg.format not in ("trl", "kto"):
        columns.append(f"{MESSAGES_SQL} AS msgs")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE x_prompts AS
            SELECT p.id, d.name AS dataset, p.content_hash, p.source, p.external_id, p.assets, {", ".join(columns)},
                   CASE WHEN md5_number_lower(p.content_hash || ':' || CAST(? AS VARCHAR)) % {SPLIT_BUCKETS} < ?
                        THEN 'test' ELSE 'train' END AS split
            FROM prompts p JOIN datasets d ON d.id = p.dataset_id
            WHERE p.id IN ({wanted}) AND (CAST(? AS INTEGER) IS NULL OR p.dataset_id = ?)""",
        [cfg.seed, threshold, dataset_id, dataset_id],
    )


def _pairs_table(store, cfg: ExportConfig, dataset_id: int | None, *, keep_ties: bool, provenance: bool) -> None:
    con = store.con
    weighted = cfg.consensus == "weighted"
    quality = prepare_consensus(
        store, dataset_id, source=cfg.source, min_quality=cfg.min_annotator_quality, weighted=weighted
    )
    sql, params = consensus_pairs_sql(
        dataset_id=dataset_id, source=cfg.source, provenance=provenance, quality=quality, weighted=weighted
    )
    ties = "" if keep_ties else "AND NOT is_tie"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE x_pairs AS SELECT * FROM ({sql}) WHERE n_votes >= ? AND agreement >= ? {ties}",
        [*params, cfg.min_annotators, cfg.min_agreement],
    )


def _pair_select(cfg: ExportConfig, *, images: bool = False) -> str:
    tie = ", c.is_tie" if cfg.ties == "keep" else ""
    if images:  # LLaMA-Factory's multimodal column: the prompt's image paths ([] for text-only rows)
        tie += """, coalesce(from_json(p.assets, '["VARCHAR"]'), []) AS images"""
    if cfg.format == "trl":
        chosen, rejected = TRL_ANSWER_SQL.format(col="gc.text"), TRL_ANSWER_SQL.format(col="gr.text")
        cols = f"p.text AS prompt, {chosen} AS chosen, {rejected} AS rejected{tie}"
        if cfg.margin_aspect is not None:  # x_means: _aspect_means
            cols += (
                ", coalesce((SELECT m FROM x_means WHERE g = c.chosen_id) - "
                "(SELECT m FROM x_means WHERE g = c.rejected_id), 0.0) AS margin"
            )
    elif cfg.format == "trl-messages":
        cols = (
            f"p.msgs AS prompt, [{{'role': 'assistant', 'content': gc.text}}] AS chosen, "
            f"[{{'role': 'assistant', 'content': gr.text}}] AS rejected{tie}"
        )
    elif cfg.format == "llamafactory" and cfg.layout == "alpaca":
        # instruction = the last user turn; earlier turns become [user, assistant] history pairs
        cols = (
            "p.turns[-1].content AS instruction, '' AS input, gc.text AS chosen, gr.text AS rejected, "
            "p.system, list_transform(range(1, len(p.turns), 2), "
            "lambda i: [p.turns[i].content, p.turns[i + 1].content]) AS history" + tie
        )
    elif cfg.format == "llamafactory":
        cols = (
            "list_transform(p.turns, lambda m: {'from': CASE m.role WHEN 'user' THEN 'human' "
            "WHEN 'assistant' THEN 'gpt' ELSE m.role END, 'value': m.content}) AS conversations, "
            "{'from': 'gpt', 'value': gc.text} AS chosen, {'from': 'gpt', 'value': gr.text} AS rejected, "
            "p.system" + tie
        )
    else:  # parquet: every provenance column
        gen_cols = ", ".join(
            f"g{x}.{col} AS {side}_{col}"
            for x, side in (("c", "chosen"), ("r", "rejected"))
            for col in ("kind", "model", "adapter", "engine", "seed", "created_at", "created_by")
        )
        cols = f"""c.prompt_id, p.dataset, p.content_hash AS prompt_hash, p.msgs AS prompt, p.text AS prompt_text,
                   p.source AS prompt_source, p.external_id AS prompt_external_id,
                   c.chosen_id, c.rejected_id, gc.text AS chosen, gr.text AS rejected, {gen_cols},
                   CAST(gc.params AS VARCHAR) AS chosen_params, CAST(gr.params AS VARCHAR) AS rejected_params,
                   c.is_tie, c.margin, c.votes_chosen, c.votes_rejected, c.votes_tie, c.n_votes, c.agreement,
                   c.ranking_ids, c.annotators, c.sources, c.first_ranked_at, c.last_ranked_at,
                   coalesce((SELECT list(n.rationale ORDER BY n.ranking_id) FROM ranking_notes n
                             WHERE list_contains(c.ranking_ids, n.ranking_id) AND n.rationale IS NOT NULL),
                            []) AS rationales, p.split"""
    turns = ""
    if cfg.format == "llamafactory":
        turns = (
            ", list_filter(msgs, lambda m: m.role <> 'system') AS turns, "
            "coalesce(list_filter(msgs, lambda m: m.role = 'system')[1].content, '') AS system"
        )
    # The prompt-id range (params 2 and 3) is repeated on every table so each chunk's joins and sort stay small.
    return f"""SELECT {cols}
               FROM x_pairs c JOIN (SELECT *{turns} FROM x_prompts) p ON p.id = c.prompt_id
               JOIN generations gc ON gc.id = c.chosen_id JOIN generations gr ON gr.id = c.rejected_id
               WHERE p.split = $1 AND c.prompt_id >= $2 AND c.prompt_id < $3 AND p.id >= $2 AND p.id < $3
                 AND gc.prompt_id >= $2 AND gc.prompt_id < $3 AND gr.prompt_id >= $2 AND gr.prompt_id < $3
               ORDER BY c.prompt_id, c.chosen_id, c.rejected_id"""


def _aspect_means(con, aspect: str) -> None:
    """x_means (g, m): each exported answer's mean rating on `aspect` over submitted rankings (the trl margin)."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE x_means AS
           SELECT t.generation_id AS g, avg(t.value) AS m FROM ratings t JOIN rankings r ON r.id = t.ranking_id
           WHERE t.aspect = ? AND t.value IS NOT NULL AND r.status = 'submitted'
             AND t.generation_id IN (SELECT chosen_id FROM x_pairs UNION SELECT rejected_id FROM x_pairs)
           GROUP BY t.generation_id""",
        [aspect],
    )


def _copy_pairs(con, select: str, side: str, path: Path, fmt: str, digests: dict[Path, str]) -> int:
    """COPY the pairs of one split side, in prompt-id chunks of about CHUNK_PAIRS appended to one file.

    Sorting millions of wide rows at once costs gigabytes; a chunk's sort and joins fit in a few hundred MB
    and the rows still come out in one global order. Parquet is written in one piece (its files do not
    concatenate).
    """
    lo, hi, n = con.execute("SELECT min(prompt_id), max(prompt_id) + 1, count(*) FROM x_pairs").fetchall()[0]
    if n == 0 or n <= CHUNK_PAIRS or fmt == "parquet":
        return _copy(con, select, [side, lo or 0, hi or 0], path, fmt)
    chunks = -(-n // CHUNK_PAIRS)
    fractions = ", ".join(f"{i / chunks:.6f}" for i in range(1, chunks))  # numbers we made, not user input
    cuts = con.execute(f"SELECT approx_quantile(prompt_id, [{fractions}]) FROM x_pairs").fetchall()[0][0]
    bounds = sorted({lo, *[int(c) for c in cuts], hi})
    written = 0
    part = path.with_name(f".part-{path.name}")
    h = hashlib.sha256()  # the bytes pass through here anyway: hash them now rather than read 1 GB+ again
    try:
        with path.open("wb") as out:
            for a, b in zip(bounds, bounds[1:], strict=False):
                written += _copy(con, select, [side, a, b], part, fmt)
                with part.open("rb") as f:
                    for block in iter(lambda f=f: f.read(1 << 20), b""):
                        h.update(block)
                        out.write(block)
    finally:
        part.unlink(missing_ok=True)
    digests[path] = h.hexdigest()
    return written


def write_export(store, cfg: ExportConfig, temps: dict[str, Path], digests: dict[Path, str]) -> dict:
    """Write the export into `temps` ({split role: temporary path}) inside the caller's transaction; return counts.

    Chunk-written files are hashed on the way and their sha256 stored in `digests`.
    """
    con = store.con
    dataset_id = store.dataset_id(cfg.dataset) if cfg.dataset is not None else None
    sides = {s: ("train" if s == "all" else s) for s in temps}
    try:
        if cfg.format in PAIR_FORMATS:
            _pairs_table(store, cfg, dataset_id, keep_ties=cfg.ties == "keep", provenance=cfg.format == "parquet")
            _prompts_table(con, cfg, dataset_id, "SELECT DISTINCT prompt_id FROM x_pairs")
            if cfg.margin_aspect is not None:
                _aspect_means(con, cfg.margin_aspect)
            images = (
                cfg.format == "llamafactory"
                and con.execute("SELECT count(*) FROM x_prompts WHERE assets IS NOT NULL").fetchall()[0][0] > 0
            )
            select = _pair_select(cfg, images=images)
            rows = {s: _copy_pairs(con, select, side, temps[s], cfg.format, digests) for s, side in sides.items()}
            stats = con.execute(
                "SELECT count(DISTINCT c.prompt_id), count(*) FILTER (WHERE c.is_tie) "
                "FROM x_pairs c JOIN x_prompts p ON p.id = c.prompt_id"
            ).fetchall()[0]
            return {
                "pairs": sum(rows.values()),
                **_by_split(rows),
                "prompts": stats[0],
                "ties": stats[1],
                **({"images": True} if images else {}),
            }
        if cfg.format in FEEDBACK_FORMATS:
            return _write_feedback(con, cfg, dataset_id, temps, sides)
        if cfg.format == "ratings":
            return _write_ratings(con, cfg, dataset_id, temps, sides)
        if cfg.format == "sft":
            _pairs_table(store, cfg, dataset_id, keep_ties=True, provenance=False)
            _sft_table(con, cfg, dataset_id)
            _prompts_table(con, cfg, dataset_id, "SELECT prompt_id FROM x_sft")
            select = """SELECT list_concat(p.msgs, [{'role': 'assistant', 'content': g.text}]) AS messages
                        FROM x_sft s JOIN x_prompts p ON p.id = s.prompt_id
                        JOIN generations g ON g.id = s.generation_id
                        WHERE p.split = ? ORDER BY s.prompt_id"""
            rows = {s: _copy(con, select, [side], temps[s], cfg.format) for s, side in sides.items()}
            origin = dict(con.execute("SELECT origin, count(*) FROM x_sft GROUP BY origin").fetchall())
            return {
                "examples": sum(rows.values()),
                **_by_split(rows),
                "prompts": sum(rows.values()),
                "ranked": origin.get("ranked", 0),
                "reference": origin.get("reference", 0),
            }
        # classification: the labelled examples as they came, split by their content hash
        threshold = int(round(cfg.test_fraction * SPLIT_BUCKETS))
        select = f"""SELECT text, label FROM examples
                     WHERE (CAST(? AS INTEGER) IS NULL OR dataset_id = ?)
                       AND (CASE WHEN md5_number_lower(content_hash || ':' || CAST(? AS VARCHAR)) % {SPLIT_BUCKETS}
                                 < ? THEN 'test' ELSE 'train' END) = ?
                     ORDER BY id"""
        rows = {
            s: _copy(con, select, [dataset_id, dataset_id, cfg.seed, threshold, side], temps[s], cfg.format)
            for s, side in sides.items()
        }
        return {"examples": sum(rows.values()), **_by_split(rows)}
    finally:
        for table in (
            "x_pairs",
            "x_prompts",
            "x_sft",
            "x_feedback",
            "x_ratings",
            "x_means",
            "x_excluded",
            "x_weighted",
        ):
            try:
                con.execute(f"DROP TABLE IF EXISTS {table}")
            except duckdb.Error:  # the transaction failed: its rollback removes them, and the first error counts
                break


def _write_feedback(con, cfg: ExportConfig, dataset_id: int | None, temps: dict[str, Path], sides: dict) -> dict:
    """KTO lines, one per feedback row: the prompt and completion as the `trl` export writes them (HH-style text,
    so prompt + completion is the conversation) or, for kto-messages, as messages; the label as a boolean."""
    allowed = FEEDBACK_SOURCES[cfg.source]
    by_source = "" if allowed is None else f"AND f.source IN ({','.join('?' * len(allowed))})"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE x_feedback AS
            SELECT f.id, f.prompt_id, f.generation_id, f.label FROM feedback f JOIN prompts p ON p.id = f.prompt_id
            WHERE (CAST(? AS INTEGER) IS NULL OR p.dataset_id = ?) {by_source}""",
        [dataset_id, dataset_id, *(allowed or ())],
    )
    _prompts_table(con, cfg, dataset_id, "SELECT DISTINCT prompt_id FROM x_feedback")
    if cfg.format == "kto":
        cols = f"p.text AS prompt, {TRL_ANSWER_SQL.format(col='g.text')} AS completion"
    else:
        cols = "p.msgs AS prompt, [{'role': 'assistant', 'content': g.text}] AS completion"
    select = f"""SELECT {cols}, f.label FROM x_feedback f JOIN x_prompts p ON p.id = f.prompt_id
                 JOIN generations g ON g.id = f.generation_id WHERE p.split = ? ORDER BY f.prompt_id, f.id"""
    rows = {s: _copy(con, select, [side], temps[s], cfg.format) for s, side in sides.items()}
    prompts, up, down = con.execute(
        "SELECT count(DISTINCT prompt_id), count(*) FILTER (WHERE label), count(*) FILTER (WHERE NOT label) "
        "FROM x_feedback WHERE prompt_id IN (SELECT id FROM x_prompts)"
    ).fetchall()[0]
    return {
        "feedback": sum(rows.values()),
        **_by_split(rows),
        "prompts": prompts,
        "desirable": up,
        "undesirable": down,
    }


def _by_split(rows: dict[str, int]) -> dict[str, int]:
    return {} if "all" in rows else {"train": rows["train"], "test": rows["test"]}


def _sft_table(con, cfg: ExportConfig, dataset_id: int | None) -> None:
    """x_sft(prompt_id, generation_id, origin): the answer to learn from for each prompt.

    Ranked: the answer with the most consensus wins minus losses (Copeland; it is the ranked-pairs winner
    whenever one answer beats every other), then the better mean rank, then the lower id. Prompts where half
    or more of the submitted rankings say 'all answers are bad' have no ranked answer. Reference: the first
    human-written reference answer. sft_prefer decides which comes first when a prompt has both.
    """
    ranked_first = cfg.sft_prefer == "ranked"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE x_sft AS
            WITH score AS (
                SELECT prompt_id, g, sum(s) AS score FROM (
                    SELECT prompt_id, chosen_id AS g, CASE WHEN is_tie THEN 0 ELSE 1 END AS s FROM x_pairs
                    UNION ALL
                    SELECT prompt_id, rejected_id, CASE WHEN is_tie THEN 0 ELSE -1 END FROM x_pairs)
                GROUP BY prompt_id, g),
            bad AS (SELECT prompt_id FROM rankings WHERE status = 'submitted'
                    GROUP BY prompt_id HAVING avg(CAST(all_bad AS INTEGER)) >= 0.5),
            mean_rank AS (SELECT i.generation_id AS g, avg(i.rank) AS mr
                          FROM ranking_items i JOIN rankings r ON r.id = i.ranking_id AND r.status = 'submitted'
                          WHERE i.generation_id IN (SELECT g FROM score) GROUP BY 1),
            ranked AS (SELECT s.prompt_id, s.g FROM score s LEFT JOIN mean_rank m USING (g)
                       WHERE s.prompt_id NOT IN (SELECT prompt_id FROM bad)
                       QUALIFY row_number() OVER (PARTITION BY s.prompt_id ORDER BY s.score DESC, m.mr, s.g) = 1),
            ref AS (SELECT g.prompt_id, min(g.id) AS g FROM generations g JOIN prompts p ON p.id = g.prompt_id
                    WHERE g.kind = 'reference' AND (CAST(? AS INTEGER) IS NULL OR p.dataset_id = ?)
                    GROUP BY g.prompt_id),
            both_ AS (SELECT prompt_id, g, 'ranked' AS origin, {0 if ranked_first else 1} AS pref FROM ranked
                      UNION ALL SELECT prompt_id, g, 'reference', {1 if ranked_first else 0} FROM ref)
            SELECT prompt_id, g AS generation_id, origin FROM both_
            QUALIFY row_number() OVER (PARTITION BY prompt_id ORDER BY pref) = 1""",
        [dataset_id, dataset_id],
    )


# One JSON object per (ranking, answer) with ratings, keys in a fixed order: prompt (a single user turn as its text,
# any other prompt as its messages), response, one key per aspect (sorted; null = not applicable; whole numbers
# without ".0", as HelpSteer writes them), rationales {aspect: text} when any, annotator. The aspects are keys of
# the line itself, which a COPY of columns cannot write, so the line is built as JSON text.
RATING_VALUE_SQL = """CASE WHEN t.value IS NULL THEN 'null'
                          WHEN t.value = trunc(t.value) AND abs(t.value) < 1e15
                          THEN CAST(CAST(t.value AS BIGINT) AS VARCHAR) ELSE to_json(t.value) END"""
RATINGS_LINE_SQL = """'{"prompt": ' || CASE WHEN len(p.msgs) = 1 AND p.msgs[1].role = 'user'
                                         THEN to_json(p.msgs[1].content) ELSE to_json(p.msgs) END
                      || ', "response": ' || to_json(g.text) || ', ' || x.aspects
                      || coalesce(', "rationales": {' || x.why || '}', '')
                      || ', "annotator": ' || to_json(x.annotator) || '}'"""


def _write_ratings(con, cfg: ExportConfig, dataset_id: int | None, temps: dict[str, Path], sides: dict) -> dict:
    """The `ratings` export: x_ratings holds one row per rated (ranking, answer) of the submitted rankings that
    pass --dataset and --source, with its aspects and rationales already as JSON text; then one COPY per side."""
    where, params = submitted_sql(dataset_id=dataset_id, source=cfg.source)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE x_ratings AS
            SELECT r.prompt_id, r.id AS ranking_id, t.generation_id, any_value(u.name) AS annotator,
                   min(i.position) AS position, count(*) AS n,
                   string_agg(to_json(t.aspect) || ': ' || {RATING_VALUE_SQL}, ', ' ORDER BY t.aspect) AS aspects,
                   string_agg(to_json(t.aspect) || ': ' || to_json(t.rationale), ', ' ORDER BY t.aspect)
                       FILTER (WHERE t.rationale IS NOT NULL) AS why
            FROM ratings t JOIN rankings r ON r.id = t.ranking_id JOIN users u ON u.id = r.user_id
            LEFT JOIN ranking_items i ON i.ranking_id = r.id AND i.generation_id = t.generation_id
            WHERE {" AND ".join(where)}
            GROUP BY r.prompt_id, r.id, t.generation_id""",
        params,
    )
    _prompts_table(con, cfg, dataset_id, "SELECT DISTINCT prompt_id FROM x_ratings")
    select = f"""SELECT {RATINGS_LINE_SQL} AS line
                 FROM x_ratings x JOIN x_prompts p ON p.id = x.prompt_id JOIN generations g ON g.id = x.generation_id
                 WHERE p.split = ? ORDER BY x.prompt_id, x.ranking_id, x.position, x.generation_id"""
    rows = {s: _copy(con, select, [side], temps[s], cfg.format) for s, side in sides.items()}
    prompts, ratings = con.execute(
        "SELECT count(DISTINCT prompt_id), coalesce(sum(n), 0) FROM x_ratings "
        "WHERE prompt_id IN (SELECT id FROM x_prompts)"
    ).fetchall()[0]
    return {"examples": sum(rows.values()), **_by_split(rows), "prompts": prompts, "ratings": ratings}
