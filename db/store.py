"""The Store: one DuckDB connection, its one lock, and the schema, applied by name-keyed migrations.

    store = Store.open("preflab.duckdb")          # applies pending migrations
    with store.transaction():                      # BEGIN ... COMMIT under the lock
        ...
    store.row("SELECT ... WHERE id = ?", [i])     # one row as a dict, or None

Only db/ writes SQL: the area modules (db/queue/, db/sampling.py, db/models_registry.py, ...) take a Store and
run their statements through `transaction()`, `query()`, `row()` and `scalar()`; no other package touches the
connection or the lock. Bulk writes go through the staging relations (db/staging.py): `write_batch` fills
them from Python rows and `commit_staged` moves what is new into the real tables in one transaction.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import duckdb

from db import staging
from db.errors import NotFoundError, PrefLabError
from db.locks import GatedLock
from db.staging import Batch, WriteCounts

log = logging.getLogger(__name__)

DEFAULT_DB = "preflab.duckdb"


def _migrations() -> list[tuple[str, str]]:
    """(name, sql) for every file in db/migrations, in name order."""
    folder = resources.files("db") / "migrations"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files]


def _connect_private(path: str, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """duckdb.connect that leaves a new database file 0600: it holds password hashes and annotators' work. DuckDB
    takes no file mode; a chmod right after the connect (only the empty header written) is safe where a umask would
    race other threads. The server sets a umask of 077 for the .wal DuckDB makes again after each checkpoint."""
    new = not read_only and path not in (":memory:", "") and not os.path.exists(path)
    con = duckdb.connect(path, read_only=read_only)
    if new:
        os.chmod(path, 0o600)
    return con


class Store:
    """Direct DuckDB access. The server holds one Store; the CLI uses one when no server runs."""

    def __init__(self, path: str | Path = DEFAULT_DB, *, read_only: bool = False):
        self.path = str(path)
        try:
            self.con = _connect_private(self.path, read_only=read_only)
        except duckdb.IOException as e:  # the server (or another process) holds the file
            raise PrefLabError(
                f"cannot open {self.path}: {e}. If a PrefLab server is running, set PREFLAB_URL so the "
                "CLI talks to it instead of the file."
            ) from e
        self._lock = GatedLock()  # one DuckDB connection shared by threads: serialise its use

    @classmethod
    def open(cls, path: str | Path = DEFAULT_DB, *, migrate: bool = True) -> Store:
        store = cls(path)
        if migrate:
            store.migrate()
        return store

    def close(self) -> None:
        self.con.close()

    def cursor(self) -> Store:
        """A Store on its own DuckDB cursor of this connection, with its own lock: it reads committed data without
        waiting for this Store's lock (the server's per-thread and per-request readers). Closing this Store
        closes its cursors."""
        with self._lock:  # creating a cursor touches the shared connection
            cursor = self.con.cursor()
        reader = object.__new__(Store)
        reader.path, reader.con, reader._lock = self.path, cursor, GatedLock(parent=self._lock)
        return reader

    def set_gate(self, gate) -> None:
        """Call `gate()` before this Store or one of its cursors takes its lock on a thread holding no Store
        lock. The server passes the wait for its journaled submits to reach the database (serving.api.queue_front),
        so every read and write sees them. None removes it."""
        self._lock.gate = gate

    # ---- migrations -------------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply pending migrations in name order; return the names applied now."""
        with self._lock:
            self.con.execute(
                "CREATE TABLE IF NOT EXISTS migrations (name VARCHAR PRIMARY KEY, "
                "applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)"
            )
            done = {r[0] for r in self.con.execute("SELECT name FROM migrations").fetchall()}
            applied = []
            for name, sql in _migrations():
                if name in done:
                    continue
                with self.transaction():
                    self.con.execute(sql)
                    self.con.execute("INSERT INTO migrations (name) VALUES (?)", [name])
                log.info("applied migration %s", name)
                applied.append(name)
            return applied

    def migration_status(self) -> list[tuple[str, str | None]]:
        """Every known migration with when it was applied (None: pending)."""
        applied = dict(self.con.execute("SELECT name, CAST(applied_at AS VARCHAR) FROM migrations").fetchall())
        return [(name, applied.get(name)) for name, _ in _migrations()]

    # ---- plumbing ---------------------------------------------------------------------------------

    @contextmanager
    def transaction(self):
        """The one way to write: BEGIN ... COMMIT under the Store's lock, or ROLLBACK on any exception, so a failed
        write leaves nothing behind. Yields the connection, for the statements of the db/ modules."""
        with self._lock:
            self.con.execute("BEGIN TRANSACTION")
            try:
                yield self.con
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
            self.con.execute("COMMIT")

    def _first(self, sql: str, params: list | tuple | None = None):
        """One row as a tuple, or None, for db/ code that already holds the lock (row() takes it)."""
        # fetchall, not fetchone: DuckDB 2 refuses new work on a connection with a half-read result
        rows = self.con.execute(sql, params or []).fetchall()
        return rows[0] if rows else None

    def row(self, sql: str, params: list | tuple | None = None) -> dict | None:
        """The first row of a query as a dict, or None when it finds nothing; takes the Store's lock."""
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def query(self, sql: str, params: list | tuple | None = None) -> list[dict]:
        """Rows as dicts (read-only helper for callers that need a few rows)."""
        with self._lock:
            cur = self.con.execute(sql, params or [])
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def scalar(self, sql: str, params: list | tuple | None = None):
        """The first column of the first row, or None when the query finds nothing."""
        with self._lock:
            row = self._first(sql, params)
            return row[0] if row else None

    def set_memory_limit(self, limit: str) -> None:
        """Cap the memory DuckDB uses for this database (e.g. "2GB"); past it, big joins and sorts spill to disk.
        DuckDB's own default is 80% of the machine's memory."""
        with self._lock:
            self.con.execute("SET memory_limit = ?", [limit])

    def counts(self) -> dict[str, int]:
        """Row counts of the main tables (also what atomicity tests compare before and after)."""
        tables = [
            "datasets",
            "prompts",
            "generations",
            "users",
            "rankings",
            "ranking_items",
            "pairs",
            "examples",
            "assignments",
            "arena_votes",
            "runs",
            "models",
        ]
        with self._lock:
            return {t: self.con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in tables}

    # ---- datasets ---------------------------------------------------------------------------------

    def ensure_dataset(self, name: str, *, created_by: str, description: str | None = None) -> int:
        """The id of dataset `name`, created if missing."""
        with self._lock:
            row = self._first("SELECT id FROM datasets WHERE name = ?", [name])
            if row:
                return row[0]
            return self.con.execute(
                "INSERT INTO datasets (name, description, created_by) VALUES (?, ?, ?) RETURNING id",
                [name, description, created_by],
            ).fetchall()[0][0]

    def has_dataset(self, name: str) -> bool:
        """Whether a dataset with this name exists."""
        return self.scalar("SELECT count(*) FROM datasets WHERE name = ?", [name]) > 0

    def dataset_id(self, name: str) -> int:
        with self._lock:  # the server calls this from many threads on one connection
            row = self._first("SELECT id FROM datasets WHERE name = ?", [name])
            if not row:
                known = ", ".join(r[0] for r in self.con.execute("SELECT name FROM datasets ORDER BY name").fetchall())
                raise NotFoundError(f"no dataset named '{name}' (known: {known or 'none'})")
            return row[0]

    def list_datasets(self) -> list[dict]:
        return self.query(
            "SELECT d.id, d.name, d.description, d.annotators_per_prompt, d.guideline_version, "
            "(SELECT count(*) FROM prompts p WHERE p.dataset_id = d.id) AS prompts, "
            "(SELECT count(*) FROM examples e WHERE e.dataset_id = d.id) AS examples, "
            "CAST(d.created_at AS VARCHAR) AS created_at FROM datasets d ORDER BY d.name"
        )

    # ---- bulk writes ------------------------------------------------------------------------------

    def write_batch(self, dataset: str, batch: Batch, *, created_by: str) -> WriteCounts:
        """Atomically add what is new in `batch` to `dataset` (created if missing)."""
        tables = batch.tables()
        with self._lock:
            for name, table in tables.items():
                self.con.register(name, table)
            try:
                with self.transaction():
                    dataset_id = self.ensure_dataset(dataset, created_by=created_by)
                    return self.commit_staged(dataset_id, created_by=created_by)
            finally:  # after COMMIT or ROLLBACK: an aborted transaction refuses even unregister
                for name in tables:
                    self.con.unregister(name)

    def commit_staged(self, dataset_id: int, *, created_by: str) -> WriteCounts:
        """Move new rows from the stage_* relations into the real tables (db.staging.commit_staged). Call inside
        `transaction()`."""
        return staging.commit_staged(self, dataset_id, created_by=created_by)

    # ---- rankings -> pairs ------------------------------------------------------------------------

    def _derive_pairs_for(self, ranking_ids_sql: str, params: list | None = None) -> int:
        """Insert the pairs of the given rankings: every two answers, the better rank chosen.

        A ranking of K answers yields K(K-1)/2 rows; ties are stored (is_tie) so exports can keep or
        drop them. Only submitted rankings count; skipped and flagged ones carry no preference.
        """
        return self.con.execute(
            f"""INSERT INTO pairs (ranking_id, prompt_id, chosen_id, rejected_id, margin, is_tie, source)
                SELECT a.ranking_id, r.prompt_id, a.generation_id, b.generation_id, b.rank - a.rank,
                       a.rank = b.rank, r.source
                FROM rankings r
                JOIN ranking_items a ON a.ranking_id = r.id
                JOIN ranking_items b ON b.ranking_id = r.id
                     AND (a.rank < b.rank OR (a.rank = b.rank AND a.generation_id < b.generation_id))
                WHERE r.id IN ({ranking_ids_sql}) AND r.status = 'submitted'
                ORDER BY a.ranking_id""",
            params or [],
        ).fetchall()[0][0]

    def derive_pairs(self, ranking_ids: list[int]) -> int:
        """(Re)derive the pairs of these rankings, e.g. after a ranking was edited."""
        if not ranking_ids:
            return 0
        marks = ",".join("?" * len(ranking_ids))
        with self._lock:
            self.con.execute(f"DELETE FROM pairs WHERE ranking_id IN ({marks})", ranking_ids)
            return self._derive_pairs_for(marks, ranking_ids)

    # ---- small conveniences used by many callers ---------------------------------------------------

    def prompt_messages(self, prompt_id: int) -> list[dict]:
        row = self._first("SELECT messages FROM prompts WHERE id = ?", [prompt_id])
        if not row:
            raise NotFoundError(f"no prompt with id {prompt_id}")
        return json.loads(row[0])
