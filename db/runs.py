"""SQL for training runs (table `runs` in 0001_core.sql), for alignment.launch, the server's runs and the CLI.

Statuses: queued -> running -> finished | failed | cancelled. A resumed run goes back to running.
"""

from __future__ import annotations

import json

from db.errors import NotFoundError

RUN_STATUSES = ("queued", "running", "finished", "failed", "cancelled")
_COLUMNS = (
    "id, stage, status, run_dir, base, parent, snapshot_id, config, metrics, pid, error, created_by, "
    "CAST(created_at AS VARCHAR) AS created_at, CAST(started_at AS VARCHAR) AS started_at, "
    "CAST(finished_at AS VARCHAR) AS finished_at"
)


def _decode(row: dict) -> dict:
    for key in ("config", "metrics"):
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    return row


def create_run(
    store,
    *,
    stage: str,
    run_dir: str,
    base: str | None,
    parent: str | None,
    snapshot_id: str | None,
    config: dict,
    created_by: str,
) -> int:
    """Insert a queued run; return its id."""
    with store.transaction() as con:
        return con.execute(
            "INSERT INTO runs (stage, status, run_dir, base, parent, snapshot_id, config, created_by) "
            "VALUES (?, 'queued', ?, ?, ?, ?, ?, ?) RETURNING id",
            [stage, run_dir, base, parent, snapshot_id, json.dumps(config, ensure_ascii=False), created_by],
        ).fetchall()[0][0]


def get_run(store, run_id: int) -> dict:
    rows = store.query(f"SELECT {_COLUMNS} FROM runs WHERE id = ?", [run_id])
    if not rows:
        raise NotFoundError(f"no run with id {run_id}")
    return _decode(rows[0])


def list_runs(store, *, status: str | None = None, limit: int = 200) -> list[dict]:
    where, params = ("WHERE status = ?", [status]) if status else ("", [])
    rows = store.query(f"SELECT {_COLUMNS} FROM runs {where} ORDER BY id DESC LIMIT ?", [*params, limit])
    return [_decode(r) for r in rows]


def mark_running(store, run_id: int, pid: int) -> None:
    with store.transaction() as con:
        con.execute(
            "UPDATE runs SET status = 'running', pid = ?, error = NULL, finished_at = NULL, "
            "started_at = coalesce(started_at, current_timestamp) WHERE id = ?",
            [pid, run_id],
        )


def mark_done(store, run_id: int, status: str, *, metrics: dict | None = None, error: str | None = None) -> None:
    """Finished, failed or cancelled, with the final metrics or the error (log tail)."""
    if status not in RUN_STATUSES:
        raise ValueError(f"unknown run status {status}")
    with store.transaction() as con:
        con.execute(
            "UPDATE runs SET status = ?, metrics = coalesce(?, metrics), error = ?, pid = NULL, "
            "finished_at = current_timestamp WHERE id = ?",
            [status, json.dumps(metrics, ensure_ascii=False) if metrics is not None else None, error, run_id],
        )


def active_runs(store) -> list[dict]:
    """Runs the database still believes are queued or running (e.g. after a server restart)."""
    return [
        _decode(r)
        for r in store.query(f"SELECT {_COLUMNS} FROM runs WHERE status IN ('queued', 'running') ORDER BY id")
    ]
