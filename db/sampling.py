"""SQL for the sampler: which prompts still need answers, storing answers, and sampling-job rows.

    todo, total = prompts_to_sample(store, "demo", model="tiny", adapter=None, params=params_json, n=4)
    insert_answers(store, prompt_id, [{"text": ..., "model": ..., ...}], created_by="sampler")

A prompt is done for a (model, adapter, params) when it holds n answers with exactly that provenance;
params is the canonical JSON text of the sampling parameters (`canonical_params`), so a rerun with the
same flags finds what an earlier, interrupted run stored.
"""

from __future__ import annotations

import json

from db.errors import InputError, NotFoundError

GEN_COLUMNS = ("text", "content_hash", "kind", "model", "adapter", "engine", "params", "seed", "prompt_tokens",
               "completion_tokens", "latency_ms", "finish_reason", "metadata")  # fmt: skip

JOB_FIELDS = {"status", "prompts_total", "prompts_done", "answers_stored", "failures", "report", "error",
              "started_at", "finished_at"}  # fmt: skip


def canonical_params(params: dict) -> str:
    """The stored form of sampling parameters: sorted keys, so equal parameters compare equal as text."""
    return json.dumps(params, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


SELECTS = ("order", "uncertainty")


def prompts_to_sample(store, dataset: str, *, model: str, adapter: str | None, params: str, n: int,
                      limit: int | None = None, select: str = "order") -> tuple[list[dict], int]:  # fmt: skip
    """(prompts holding fewer than n answers of this provenance, number of prompts considered).

    Each row: id, messages (list), have (answers already stored). `select` 'order': `limit` takes the first
    prompts by id, so a rerun with the same limit covers the same prompts. 'uncertainty': `limit` takes the
    prompts still short of n answers with the highest stored priority (db.priority; unscored ones after, by id),
    so a rerun finishes an interrupted batch and, once it is done, takes the next one.
    """
    if select not in SELECTS:
        raise InputError(f"select must be one of {', '.join(SELECTS)}, not {select!r}", field="select")
    have = """count(g.id) FILTER (WHERE g.model = ? AND g.adapter IS NOT DISTINCT FROM ?
                                  AND CAST(g.params AS VARCHAR) = ?)"""
    with store._lock:
        dataset_id = store.dataset_id(dataset)
        if select == "order":
            sql = f"""WITH ps AS (SELECT id, messages FROM prompts WHERE dataset_id = ? ORDER BY id LIMIT ?)
                      SELECT ps.id, CAST(ps.messages AS VARCHAR) AS messages, {have} AS have
                      FROM ps LEFT JOIN generations g ON g.prompt_id = ps.id
                      GROUP BY ps.id, ps.messages ORDER BY ps.id"""  # constant SQL
            params = [dataset_id, limit if limit is not None else 2**62, model, adapter, params]
        else:
            sql = f"""SELECT p.id, CAST(p.messages AS VARCHAR) AS messages, {have} AS have
                      FROM prompts p LEFT JOIN generations g ON g.prompt_id = p.id
                      LEFT JOIN prompt_priority pp ON pp.prompt_id = p.id
                      WHERE p.dataset_id = ? GROUP BY p.id, p.messages, pp.score HAVING have < ?
                      ORDER BY pp.score DESC NULLS LAST, p.id LIMIT ?"""  # constant SQL
            params = [model, adapter, params, dataset_id, n, limit if limit is not None else 2**62]
        rows = store.con.execute(sql, params).fetchall()
    todo = [{"id": r[0], "messages": json.loads(r[1]), "have": r[2]} for r in rows if r[2] < n]
    return todo, len(rows)


def existing_texts(store, prompt_id: int) -> list[str]:
    """Every answer already stored for a prompt (any model), for de-duplication."""
    with store._lock:
        return [r[0] for r in store.con.execute("SELECT text FROM generations WHERE prompt_id = ?",
                                                [prompt_id]).fetchall()]  # fmt: skip


def insert_answers(store, prompt_id: int, rows: list[dict], *, created_by: str,
                   cap: int | None = None) -> tuple[int, int]:  # fmt: skip
    """Store one prompt's answers in one transaction; an answer already stored (same text) is skipped.

    Each row has the keys of GEN_COLUMNS (content_hash = db.hashing.text_hash(text)); the rows share one
    provenance (model, adapter, params). With `cap`, the prompt ends with at most `cap` answers of that
    provenance, counted inside the transaction, so two requests for the same answers (a retry whose first
    attempt answered late, two runs at once) cannot store more than cap. Returns (rows added, rows left out
    because the cap was reached).
    """
    if not rows:
        return 0, 0
    cols = ", ".join(GEN_COLUMNS)
    marks = ", ".join("?" * (len(GEN_COLUMNS) + 2))
    added = 0
    with store.transaction() as con:
        room = len(rows)
        if cap is not None:
            first = rows[0]
            have = con.execute(
                """SELECT count(*) FROM generations WHERE prompt_id = ? AND model = ?
                   AND adapter IS NOT DISTINCT FROM ? AND CAST(params AS VARCHAR) = ?""",
                [prompt_id, first.get("model"), first.get("adapter"), first.get("params")],
            ).fetchall()[0][0]
            room = max(0, cap - have)
        tried = 0
        for row in rows:
            if added >= room:
                break
            tried += 1
            added += con.execute(
                f"INSERT INTO generations (prompt_id, {cols}, created_by) VALUES ({marks}) ON CONFLICT DO NOTHING",
                [prompt_id, *(row.get(c) for c in GEN_COLUMNS), created_by],
            ).fetchall()[0][0]
    return added, len(rows) - tried


def delete_answers(store, dataset: str) -> int:
    """Delete every answer of the dataset's prompts, so a sampler starts from none; returns how many. Answers
    that rankings refer to cannot go (DuckDB keeps the foreign keys), so this is for a dataset nobody ranked."""
    with store.transaction() as con:
        return con.execute(
            "DELETE FROM generations WHERE prompt_id IN (SELECT id FROM prompts WHERE dataset_id = ?)",
            [store.dataset_id(dataset)],
        ).fetchall()[0][0]


# ---- sampling jobs (shown by the server) ------------------------------------------------------------


def create_job(store, *, dataset: str, model: str, engine: str | None, params: dict, created_by: str) -> int:
    with store._lock:
        store.dataset_id(dataset)  # fail early on an unknown dataset
        return store.con.execute(
            "INSERT INTO sampling_jobs (dataset, model, engine, params, created_by) VALUES (?, ?, ?, ?, ?) "
            "RETURNING id",
            [dataset, model, engine, json.dumps(params, ensure_ascii=False), created_by],
        ).fetchall()[0][0]


def update_job(store, job_id: int, **fields) -> None:
    """Set any of JOB_FIELDS; `report` may be a dict; started_at/finished_at may be 'now'."""
    unknown = set(fields) - JOB_FIELDS
    if unknown:
        raise ValueError(f"unknown sampling_jobs fields: {sorted(unknown)}")
    sets, values = [], []
    for k, v in fields.items():
        if k in ("started_at", "finished_at") and v == "now":
            sets.append(f"{k} = current_timestamp")
            continue
        sets.append(f"{k} = ?")
        values.append(json.dumps(v, ensure_ascii=False) if k == "report" and v is not None else v)
    with store._lock:
        store.con.execute(f"UPDATE sampling_jobs SET {', '.join(sets)} WHERE id = ?", [*values, job_id])


def _job_rows(store, where: str, params: list, limit: int = 100) -> list[dict]:
    rows = store.query(
        "SELECT id, dataset, model, engine, CAST(params AS VARCHAR) AS params, status, prompts_total, prompts_done, "
        "answers_stored, failures, CAST(report AS VARCHAR) AS report, error, created_by, "
        "CAST(created_at AS VARCHAR) AS created_at, CAST(started_at AS VARCHAR) AS started_at, "
        f"CAST(finished_at AS VARCHAR) AS finished_at FROM sampling_jobs {where} ORDER BY id DESC LIMIT ?",
        [*params, limit],
    )
    for r in rows:
        r["params"] = json.loads(r["params"]) if r["params"] else None
        r["report"] = json.loads(r["report"]) if r["report"] else None
    return rows


def get_job(store, job_id: int) -> dict:
    rows = _job_rows(store, "WHERE id = ?", [job_id])
    if not rows:
        raise NotFoundError(f"no sampling job with id {job_id}")
    return rows[0]


def list_jobs(store, *, dataset: str | None = None, limit: int = 100) -> list[dict]:
    if dataset:
        return _job_rows(store, "WHERE dataset = ?", [dataset], limit)
    return _job_rows(store, "", [], limit)


def fail_interrupted_jobs(store) -> int:
    """Mark the jobs left queued or running by a server that stopped as failed ('server restarted'): their threads
    died with it. Returns how many there were."""
    with store.transaction() as con:
        return con.execute(
            "UPDATE sampling_jobs SET status = 'failed', error = 'server restarted' "
            "WHERE status IN ('queued', 'running')"
        ).fetchall()[0][0]
