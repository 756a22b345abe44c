"""SQL for the models table: base models, trained LoRA adapters, merged models, external endpoints.

A finished training run registers its adapter here (name, base, stage, parent, snapshot id, final metrics),
which is what engines and the arena list and select.
"""

from __future__ import annotations

import json

from db.errors import ConflictError, NotFoundError

MODEL_KINDS = ("base", "adapter", "merged", "external")
_COLUMNS = (
    "id, name, kind, base, path, stage, parent, run_id, snapshot_id, metrics, created_by, "
    "CAST(created_at AS VARCHAR) AS created_at"
)


def _decode(row: dict) -> dict:
    if isinstance(row.get("metrics"), str):
        row["metrics"] = json.loads(row["metrics"])
    return row


def register_model(
    store,
    *,
    name: str,
    kind: str,
    path: str | None,
    created_by: str,
    base: str | None = None,
    stage: str | None = None,
    parent: str | None = None,
    run_id: int | None = None,
    snapshot_id: str | None = None,
    metrics: dict | None = None,
) -> int:
    """Add a model; a name already taken is a ConflictError (names are what engines and the arena select)."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"kind must be one of {', '.join(MODEL_KINDS)}")
    with store._lock:
        if store._first("SELECT 1 FROM models WHERE name = ?", [name]):
            raise ConflictError(f"a model named '{name}' is already registered; choose another name")
        return store.con.execute(
            "INSERT INTO models (name, kind, base, path, stage, parent, run_id, snapshot_id, metrics, created_by) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            [
                name,
                kind,
                base,
                path,
                stage,
                parent,
                run_id,
                snapshot_id,
                json.dumps(metrics, ensure_ascii=False) if metrics is not None else None,
                created_by,
            ],
        ).fetchall()[0][0]


def get_model(store, name: str) -> dict:
    rows = store.query(f"SELECT {_COLUMNS} FROM models WHERE name = ?", [name])
    if not rows:
        known = ", ".join(r["name"] for r in store.query("SELECT name FROM models ORDER BY name")) or "none"
        raise NotFoundError(f"no model named '{name}' (known: {known})")
    return _decode(rows[0])


def find_model(store, name: str) -> dict | None:
    """The registered model with this name, or None (get_model when a missing name is the caller's error)."""
    rows = store.query(f"SELECT {_COLUMNS} FROM models WHERE name = ?", [name])
    return _decode(rows[0]) if rows else None


def list_models(store, *, kind: str | None = None, metrics_as_text: bool = False) -> list[dict]:
    """Every registered model in registration order, optionally of one kind. `metrics_as_text` keeps the final
    metrics as the stored JSON text, which is what GET /api/models answers."""
    where, params = ("WHERE kind = ?", [kind]) if kind else ("", [])
    rows = store.query(f"SELECT {_COLUMNS} FROM models {where} ORDER BY id", params)
    return rows if metrics_as_text else [_decode(r) for r in rows]


def model_cards(store) -> list[dict]:
    """name, kind, base and created (Unix seconds) of every registered model in registration order: what the
    OpenAI-compatible /v1/models lists beside the engines' own models."""
    return store.query("SELECT name, kind, base, epoch(created_at)::BIGINT AS created FROM models ORDER BY id")


def model_for_run(store, run_id: int) -> dict | None:
    rows = store.query(f"SELECT {_COLUMNS} FROM models WHERE run_id = ?", [run_id])
    return _decode(rows[0]) if rows else None


def unique_name(store, wanted: str) -> str:
    """`wanted`, or wanted-2, wanted-3, ... when taken."""
    taken = {r["name"] for r in store.query("SELECT name FROM models WHERE name LIKE ?", [wanted + "%"])}
    if wanted not in taken:
        return wanted
    n = 2
    while f"{wanted}-{n}" in taken:
        n += 1
    return f"{wanted}-{n}"
