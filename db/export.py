"""Exports: preference pairs, SFT data and labelled examples in the formats trainers read, with a snapshot id.

    from db.export import export
    r = export(store, "trl", "out/prefs.jsonl", dataset="oasst-demo", split="test=0.1", seed=0)
    r.snapshot_id, r.counts, r.paths      # paths: {"train": out/prefs_train.jsonl, "test": out/prefs_test.jsonl}

Formats (one literal example of each in docs/formats.md):
    trl            {"prompt": str, "chosen": str, "rejected": str} per pair; the prompt rendered as text
    trl-messages   {"prompt": [messages], "chosen": [{"role": "assistant", ...}], "rejected": [...]}
    llamafactory   LLaMA-Factory ranking data, --layout alpaca or sharegpt, plus its dataset_info.json entry
    sft            {"messages": [..., {"role": "assistant", "content": best answer]} per prompt
    classification {"text", "label"} as JSONL, or CSV when --out ends in .csv
    parquet        pairs with every provenance column

Pairs are the consensus pairs of db.consensus (one per answer pair of a prompt, majority direction, vote
counts, agreement), filtered by min_annotators / min_agreement / ties / source. Everything is done by DuckDB
(`COPY (SELECT ...) TO`), streaming and in order, so millions of pairs never become Python objects. Files are
written under a temporary name and renamed when complete. The snapshot id is the sha256 of the written
file (with a split: of the lines "ROLE SHA256" of its files), also stored in PATH.snapshot.json with the
format, filters, counts and each file's sha256.

Split (--split test=0.1 --seed 0): a prompt goes to test when md5(content_hash:seed) mod 10^6 < 0.1 * 10^6,
so no prompt is on both sides, the same seed always gives the same split, and the same prompt lands on the
same side in every dataset. Files: OUT_train.EXT and OUT_test.EXT (OUT without its extension).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from db.consensus import SOURCES, consensus_pairs_sql
from db.errors import InputError

log = logging.getLogger(__name__)

FORMATS = ("trl", "trl-messages", "llamafactory", "sft", "classification", "parquet")
PAIR_FORMATS = ("trl", "trl-messages", "llamafactory", "parquet")
KNOWN_SUFFIXES = (".jsonl.gz", ".json.gz", ".csv.gz", ".jsonl", ".json", ".csv", ".parquet")
SPLIT_BUCKETS = 1_000_000
CHUNK_PAIRS = 500_000  # pairs per COPY when writing JSON Lines: bounds the memory of the sort

MESSAGES_SQL = "list_transform(CAST(p.messages AS JSON[]), lambda m: {'role': m->>'role', 'content': m->>'content'})"
# trl's string prompt: a single user turn as it is; otherwise "Role: content" blocks separated by a blank line.
# The single-turn case (nearly every prompt) reads the JSON directly: parsing into a list costs 4x more.
TEXT_SQL = f"""CASE WHEN json_array_length(p.messages) = 1 AND p.messages->>'$[0].role' = 'user'
                    THEN coalesce(p.messages->>'$[0].content', '')
                    ELSE array_to_string(list_transform({MESSAGES_SQL}, lambda m: upper(left(m.role, 1))
                         || substr(m.role, 2) || ': ' || coalesce(m.content, '')), chr(10) || chr(10)) END"""


@dataclass(kw_only=True)
class ExportConfig:
    """What to export. Values may arrive as strings (CLI, HTTP query): they are converted here."""

    format: str
    dataset: str | None = None
    split: str | float | None = None  # "test=0.1", 0.1 or None (one file)
    seed: int = 0
    min_annotators: int = 1  # votes on a pair (ties count: they are judgments)
    min_agreement: float = 0.0  # share of non-tie votes for the majority direction
    ties: str = "drop"  # keep: consensus ties are exported too, marked is_tie
    source: str = "all"  # human | arena | all (db.consensus.SOURCES)
    layout: str = "alpaca"  # llamafactory: alpaca | sharegpt
    sft_prefer: str = "ranked"  # sft: ranked (best-ranked, else reference) | reference (reference, else ranked)
    test_fraction: float = field(init=False, default=0.0)

    def __post_init__(self):
        if self.format not in FORMATS:
            raise InputError(f"unknown export format '{self.format}': use one of {', '.join(FORMATS)}", field="format")
        self.test_fraction = parse_split(self.split)
        try:
            self.seed, self.min_annotators = int(self.seed), int(self.min_annotators)
            self.min_agreement = float(self.min_agreement)
        except (TypeError, ValueError) as e:
            raise InputError(f"seed and min_annotators must be integers, min_agreement a number ({e})") from None
        if self.min_annotators < 1:
            raise InputError("min_annotators must be 1 or more", field="min_annotators")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise InputError("min_agreement is a share: use a number from 0 to 1, e.g. 0.66", field="min_agreement")
        for name, allowed in (
            ("ties", ("drop", "keep")),
            ("source", tuple(SOURCES)),
            ("layout", ("alpaca", "sharegpt")),
            ("sft_prefer", ("ranked", "reference")),
        ):
            if getattr(self, name) not in allowed:
                raise InputError(f"'{getattr(self, name)}' is not one of {', '.join(allowed)}", field=name)

    def filters(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("format", "test_fraction")}


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


def parse_split(split: str | float | None) -> float:
    """'test=0.1' (or 0.1) -> 0.1; None or '' -> 0 (no split)."""
    if split is None or split == "" or split == 0:
        return 0.0
    text = str(split).strip()
    name, _, value = text.rpartition("=")
    try:
        fraction = float(value)
    except ValueError:
        fraction = -1.0
    if name not in ("", "test") or not 0.0 < fraction < 1.0:
        raise InputError(
            f"cannot read split '{text}': write test=FRACTION with 0 < FRACTION < 1, e.g. test=0.1", field="split"
        )
    return fraction


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


def export(
    store,
    fmt: str | None = None,
    out: str | Path | None = None,
    *,
    format: str | None = None,  # noqa: A002
    dataset: str | None = None,
    split: str | float | None = None,
    seed: int = 0,
    min_annotators: int = 1,
    min_agreement: float = 0.0,
    ties: str = "drop",
    source: str = "all",
    layout: str = "alpaca",
    sft_prefer: str = "ranked",
) -> ExportResult:
    """Export `fmt` (alias `format`) to `out`; see the module docstring. Returns an ExportResult."""
    if out is None:
        raise InputError("an export needs an output path", field="out")
    cfg = ExportConfig(
        format=fmt or format or "",
        dataset=dataset,
        split=split,
        seed=seed,
        min_annotators=min_annotators,
        min_agreement=min_agreement,
        ties=ties,
        source=source,
        layout=layout,
        sft_prefer=sft_prefer,
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    splits = ["train", "test"] if cfg.test_fraction > 0 else ["all"]
    paths = split_paths(out, cfg.format, splits)
    if cfg.format == "classification" and not any(
        str(p).endswith((".csv", ".csv.gz", ".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet"))
        for p in paths.values()
    ):
        raise InputError("classification exports end in .csv, .jsonl or .parquet", field="out")
    temps = {s: p.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{p.name}") for s, p in paths.items()}
    digests: dict[Path, str] = {}  # files hashed while they were written (chunked JSON Lines)
    try:
        with store.transaction():
            counts = _write(store, cfg, temps, digests)
        for s, tmp in temps.items():
            os.replace(tmp, paths[s])
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
    if cfg.format == "llamafactory":
        paths["dataset_info"] = _write_dataset_info(cfg, dict(paths), images=counts.pop("images", False))
    file_digests = {s: digests.get(temps[s]) or file_digest(paths[s]) for s in splits}
    snapshot_id = snapshot_hash(file_digests)
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


# ---- SQL ---------------------------------------------------------------------------------------


def _copy(con, select: str, params: list, path: Path, fmt: str) -> int:
    name = path.name.removesuffix(".gz")
    if fmt == "parquet" or name.endswith(".parquet"):
        options = "FORMAT parquet, COMPRESSION zstd"
    elif name.endswith(".csv"):
        options = "FORMAT csv, HEADER true"
    else:
        options = "FORMAT json"
    target = f"${len(params) + 1}" if "$1" in select else "?"  # numbered and positional parameters do not mix
    return con.execute(f"COPY ({select}) TO {target} ({options})", [*params, str(path)]).fetchall()[0][0]


def _prompts_table(con, cfg: ExportConfig, dataset_id: int | None, wanted: str) -> None:
    """x_prompts: the prompts in `wanted` (a SELECT of ids) with split side, and the renderings the format needs."""
    threshold = int(round(cfg.test_fraction * SPLIT_BUCKETS))
    columns = []
    if cfg.format in ("trl", "parquet"):
        columns.append(f"{TEXT_SQL} AS text")
    if cfg.format != "trl":
        columns.append(f"{MESSAGES_SQL} AS msgs")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE x_prompts AS
            SELECT p.id, d.name AS dataset, p.content_hash, p.source, p.external_id, p.assets, {", ".join(columns)},
                   CASE WHEN md5_number_lower(p.content_hash || ':' || CAST(? AS VARCHAR)) % {SPLIT_BUCKETS} < ?
                        THEN 'test' ELSE 'train' END AS split
            FROM prompts p JOIN datasets d ON d.id = p.dataset_id
            WHERE p.id IN ({wanted}) AND (CAST(? AS INTEGER) IS NULL OR p.dataset_id = ?)""",  # noqa: S608
        [cfg.seed, threshold, dataset_id, dataset_id],
    )


def _pairs_table(con, cfg: ExportConfig, dataset_id: int | None, *, keep_ties: bool, provenance: bool) -> None:
    sql, params = consensus_pairs_sql(dataset_id=dataset_id, source=cfg.source, provenance=provenance)
    ties = "" if keep_ties else "AND NOT is_tie"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE x_pairs AS SELECT * FROM ({sql}) "  # noqa: S608
        f"WHERE n_votes >= ? AND agreement >= ? {ties}",
        [*params, cfg.min_annotators, cfg.min_agreement],
    )


def _pair_select(cfg: ExportConfig, *, images: bool = False) -> str:
    tie = ", c.is_tie" if cfg.ties == "keep" else ""
    if images:  # LLaMA-Factory's multimodal column: the prompt's image paths ([] for text-only rows)
        tie += """, coalesce(from_json(p.assets, '["VARCHAR"]'), []) AS images"""
    if cfg.format == "trl":
        cols = f"p.text AS prompt, gc.text AS chosen, gr.text AS rejected{tie}"
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
                   c.ranking_ids, c.annotators, c.sources, c.first_ranked_at, c.last_ranked_at, p.split"""
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
               ORDER BY c.prompt_id, c.chosen_id, c.rejected_id"""  # noqa: S608


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


def _write(store, cfg: ExportConfig, temps: dict[str, Path], digests: dict[Path, str]) -> dict:
    con = store.con
    dataset_id = store.dataset_id(cfg.dataset) if cfg.dataset is not None else None
    sides = {s: ("train" if s == "all" else s) for s in temps}
    try:
        if cfg.format in PAIR_FORMATS:
            _pairs_table(con, cfg, dataset_id, keep_ties=cfg.ties == "keep", provenance=cfg.format == "parquet")
            _prompts_table(con, cfg, dataset_id, "SELECT DISTINCT prompt_id FROM x_pairs")
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
        if cfg.format == "sft":
            _pairs_table(con, cfg, dataset_id, keep_ties=True, provenance=False)
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
                     ORDER BY id"""  # noqa: S608
        rows = {
            s: _copy(con, select, [dataset_id, dataset_id, cfg.seed, threshold, side], temps[s], cfg.format)
            for s, side in sides.items()
        }
        return {"examples": sum(rows.values()), **_by_split(rows)}
    finally:
        for table in ("x_pairs", "x_prompts", "x_sft"):
            try:
                con.execute(f"DROP TABLE IF EXISTS {table}")
            except duckdb.Error:  # the transaction failed: its rollback removes them, and the first error counts
                break


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
            QUALIFY row_number() OVER (PARTITION BY prompt_id ORDER BY pref) = 1""",  # noqa: S608
        [dataset_id, dataset_id],
    )


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
