"""Databases generated in SQL for the benchmarks (bench/): many rows in seconds, made with range().

    generate_ranked(store, 100_000)                          # bench/export.py: 100k rankings of 4 answers
    generate_answers(store, "bench", prompts=250_000, answers=4)   # bench/annotate.py: prompts x answers

Python rows through the importer would take minutes at these sizes, and the importer has its own benchmark
(bench/pairs.py), so these write the tables in SQL: straight into the real tables, or through the staging
relations and `Store.commit_staged` like an import.
"""

from __future__ import annotations

from db.staging import Batch


def generate_ranked(store, n: int) -> None:
    """Into an empty database: dataset 'bench', annotator 'ann', n prompts of 4 answers each (unicode texts), one
    submitted ranking of the 4 per prompt with a fixed pattern of ranks (ties included), and its pairs."""
    with store.transaction() as c:
        c.execute("INSERT INTO datasets (name, created_by) VALUES ('bench', 'bench')")
        c.execute("INSERT INTO users (name, role, kind, created_by) VALUES ('ann', 'annotator', 'imported', 'bench')")
        c.execute(
            """INSERT INTO prompts (id, dataset_id, messages, content_hash, created_by)
               SELECT i, 1, to_json([{'role': 'user', 'content': '¿Pregunta ' || i || '? 東京 🗼'}]),
                      sha256(i::VARCHAR), 'bench' FROM range(1, ? + 1) t(i)""",
            [n],
        )
        c.execute(
            """INSERT INTO generations (id, prompt_id, text, content_hash, kind, created_by)
               SELECT i, (i - 1) // 4 + 1, 'Respuesta ' || i || ' — 答案 😀 with some more words in it',
                      sha256(i::VARCHAR), 'imported', 'bench' FROM range(1, 4 * ? + 1) t(i)""",
            [n],
        )
        c.execute(
            """INSERT INTO rankings (id, prompt_id, user_id, status, source, created_by)
               SELECT i, i, 1, 'submitted', 'import', 'bench' FROM range(1, ? + 1) t(i)""",
            [n],
        )
        c.execute(
            """INSERT INTO ranking_items (ranking_id, generation_id, rank)
               SELECT (i - 1) // 4 + 1, i, ((i * 7) % 4) + 1 FROM range(1, 4 * ? + 1) t(i)""",
            [n],
        )
        store._derive_pairs_for("SELECT id FROM rankings")


def generate_answers(store, dataset: str, *, prompts: int, answers: int) -> int:
    """Add `prompts` prompts with `answers` model answers each to `dataset` (created if missing), through the
    staging relations and `Store.commit_staged`; answer j is 20*j characters longer than answer 0. Returns the
    dataset's id."""
    empty = Batch().tables()
    with store._lock:
        rest = [name for name in empty if name not in ("stage_prompts", "stage_generations")]
        for name in rest:
            store.con.register(name, empty[name])
        try:
            store.con.execute(
                """CREATE TEMP TABLE stage_prompts AS
                   SELECT sha256('user' || chr(31) || q || chr(30)) AS key,
                          json_array(json_object('role', 'user', 'content', q))::VARCHAR AS messages,
                          'bench' AS source, CAST(i AS VARCHAR) AS external_id, NULL::VARCHAR AS metadata,
                          NULL::VARCHAR AS assets
                   FROM (SELECT range AS i, 'Question ' || range || ': explain why the sky looks blue at noon but '
                                || 'red at sunset, briefly. ¿Por qué? 为什么？' AS q FROM range(?))""",
                [prompts],
            )
            store.con.execute(
                """CREATE TEMP TABLE stage_generations AS
                   SELECT p.key AS prompt_key, sha256(t) AS gen_key, t AS text, 'model' AS kind,
                          'bench-' || j AS model, NULL::VARCHAR AS adapter, 'bench' AS engine,
                          NULL::VARCHAR AS params, NULL::BIGINT AS seed, NULL::INTEGER AS prompt_tokens,
                          NULL::INTEGER AS completion_tokens, NULL::DOUBLE AS latency_ms, 'stop' AS finish_reason,
                          NULL::VARCHAR AS metadata
                   FROM stage_prompts p, range(?) r(j),
                        LATERAL (SELECT 'Answer ' || j || ' to ' || p.external_id || ': Rayleigh scattering '
                                        || 'favours short wavelengths; at sunset light crosses more air. '
                                        || repeat('x', 20 * j) AS t)""",
                [answers],
            )
            with store.transaction():
                dataset_id = store.ensure_dataset(dataset, created_by="bench")
                store.commit_staged(dataset_id, created_by="bench")
        finally:
            store.con.execute("DROP TABLE IF EXISTS stage_prompts")
            store.con.execute("DROP TABLE IF EXISTS stage_generations")
            for name in rest:
                store.con.unregister(name)
    return dataset_id
