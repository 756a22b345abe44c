"""pairs carries no per-row constraints (migration 0009, for bulk loads): what its PRIMARY KEY, UNIQUE and FOREIGN
KEYs guaranteed still holds, because pairs are only written for a ranking that has none, from its items."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from db import store as store_module
from db.importers import fastimport, import_file
from db.store import Store

ROWS = [
    {"prompt": "¿Qué es el té? 🍵", "responses": ["茶是饮料。", "Una bebida.", "No sé", ""], "ranks": [1, 2, 2, 4]},
    {"prompt": "Hola 👋", "responses": ["¡Hola!", "你好"], "ranks": [2, 1], "annotator": "ana"},
    {"prompt": "Hola 👋", "responses": ["¡Hola!", "你好", "Hi 🙂"], "ranks": [3, 1, 2], "annotator": "li"},
]

# every way pairs could break: a repeated (ranking, chosen, rejected), an id that names no row, a pair that is not
# one of its ranking's items, a repeated id
BROKEN = {
    "duplicate": "SELECT count(*) - count(DISTINCT (ranking_id, chosen_id, rejected_id)) FROM pairs",
    "dangling": """SELECT count(*) FROM pairs p
                   LEFT JOIN rankings r ON r.id = p.ranking_id AND r.prompt_id = p.prompt_id
                   LEFT JOIN ranking_items a ON a.ranking_id = p.ranking_id AND a.generation_id = p.chosen_id
                   LEFT JOIN ranking_items b ON b.ranking_id = p.ranking_id AND b.generation_id = p.rejected_id
                   WHERE r.id IS NULL OR a.ranking_id IS NULL OR b.ranking_id IS NULL""",
    "ids": "SELECT count(*) - count(DISTINCT id) FROM pairs",
    "pair count": """SELECT (SELECT count(*) FROM pairs)
                            - (SELECT coalesce(sum(n * (n - 1) // 2), 0) FROM (SELECT count(*) AS n
                               FROM ranking_items i JOIN rankings r ON r.id = i.ranking_id
                               WHERE r.status = 'submitted' GROUP BY i.ranking_id))""",
}


def broken(store: Store) -> dict[str, int]:
    return {name: store.con.execute(sql).fetchall()[0][0] for name, sql in BROKEN.items()}


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("engine", ["python", "duckdb"])
def test_reimport_adds_no_pairs(tmp_path, monkeypatch, engine):
    monkeypatch.setattr(fastimport, "COMMIT_ROWS", 2)  # the DuckDB path commits in two chunks
    src = write(tmp_path / "r.jsonl", ROWS)
    store = Store.open(tmp_path / "db.duckdb")
    first = import_file(store, src, fmt="ranked", dataset="d", engine=engine)
    assert first.added.pairs == 6 + 1 + 3
    pairs = store.con.execute("SELECT * FROM pairs ORDER BY id").fetchall()
    again = import_file(store, src, fmt="ranked", dataset="d", engine=engine)
    assert again.added.pairs == 0
    assert store.con.execute("SELECT * FROM pairs ORDER BY id").fetchall() == pairs
    assert broken(store) == dict.fromkeys(BROKEN, 0)


def test_rederiving_a_ranking_replaces_its_pairs(tmp_path):
    store = Store.open(tmp_path / "db.duckdb")
    import_file(store, write(tmp_path / "r.jsonl", ROWS), fmt="ranked", dataset="d", engine="duckdb")
    # the ranking of four answers, and another one
    rid, other = (
        r[0]
        for r in store.con.execute(
            "SELECT ranking_id FROM ranking_items GROUP BY ranking_id ORDER BY count(*) DESC, ranking_id LIMIT 2"
        ).fetchall()
    )
    untouched = store.con.execute("SELECT * FROM pairs WHERE ranking_id = ? ORDER BY id", [other]).fetchall()
    # an edit: the worst answer becomes the best; its pairs are derived again, twice
    store.con.execute("UPDATE ranking_items SET rank = 5 - rank WHERE ranking_id = ?", [rid])
    assert store.derive_pairs([rid]) == 6
    assert store.derive_pairs([rid, rid]) == 6
    chosen = store.con.execute(
        "SELECT g.text FROM pairs p JOIN generations g ON g.id = p.chosen_id WHERE p.ranking_id = ? AND margin = 3",
        [rid],
    ).fetchall()
    assert chosen == [("",)]  # the empty answer, ranked 4th, is now first
    assert store.con.execute("SELECT * FROM pairs WHERE ranking_id = ? ORDER BY id", [other]).fetchall() == untouched
    assert broken(store) == dict.fromkeys(BROKEN, 0)
    # a ranking that is no longer submitted has no pairs
    store.con.execute("UPDATE rankings SET status = 'skipped' WHERE id = ?", [rid])
    assert store.derive_pairs([rid]) == 0
    assert broken(store) == dict.fromkeys(BROKEN, 0)


def test_an_answer_in_a_pair_cannot_be_deleted(tmp_path):
    """pairs no longer references generations itself; ranking_items still does, and every pair's answers are
    items of its ranking."""
    store = Store.open(tmp_path / "db.duckdb")
    import_file(store, write(tmp_path / "r.jsonl", ROWS), fmt="ranked", dataset="d")
    chosen = store.con.execute("SELECT chosen_id FROM pairs LIMIT 1").fetchall()[0][0]
    with pytest.raises(Exception, match="(?i)foreign key|constraint"):
        store.con.execute("DELETE FROM generations WHERE id = ?", [chosen])


def test_migration_0009_keeps_every_pair(tmp_path, monkeypatch):
    every = store_module._migrations()
    new = "0009_pairs_bulk"
    assert new in dict(every)
    monkeypatch.setattr(store_module, "_migrations", lambda: [m for m in every if m[0] < new])
    path = tmp_path / "old.duckdb"
    old = Store.open(path)
    import_file(old, write(tmp_path / "r.jsonl", ROWS), fmt="ranked", dataset="d")
    before = old.con.execute("SELECT * FROM pairs ORDER BY id").fetchall()
    assert len(before) == 10
    old.close()

    monkeypatch.setattr(store_module, "_migrations", lambda: every)
    store = Store.open(path)
    assert all(applied for _, applied in store.migration_status())
    assert store.con.execute("SELECT * FROM pairs ORDER BY id").fetchall() == before
    # new pairs continue the sequence; the same file again adds none
    rows = [{"prompt": "Otra pregunta 🤔", "responses": ["sí", "no"], "ranks": [1, 2]}]
    import_file(store, write(tmp_path / "more.jsonl", rows), fmt="ranked", dataset="d")
    assert store.con.execute("SELECT min(id), max(id), count(*) FROM pairs").fetchall() == [(1, 11, 11)]
    assert import_file(store, tmp_path / "r.jsonl", fmt="ranked", dataset="d").added.pairs == 0
    assert broken(store) == dict.fromkeys(BROKEN, 0)


def content(store: Store) -> dict[str, list]:
    """What is stored, by content rather than by id."""
    q = {
        "prompts": "SELECT messages, content_hash FROM prompts ORDER BY ALL",
        "generations": "SELECT p.content_hash, g.text, g.content_hash, g.kind FROM generations g "
        "JOIN prompts p ON p.id = g.prompt_id ORDER BY ALL",
        "rankings": """SELECT p.content_hash, u.name, r.source_record,
                              list(g.text || '=' || i.rank ORDER BY i.position)
                       FROM rankings r JOIN prompts p ON p.id = r.prompt_id JOIN users u ON u.id = r.user_id
                       JOIN ranking_items i ON i.ranking_id = r.id JOIN generations g ON g.id = i.generation_id
                       GROUP BY ALL ORDER BY ALL""",
        # a tie's two answers in either order: which is "chosen" follows the answers' ids
        "pairs": """SELECT CASE WHEN x.is_tie THEN least(gc.text, gr.text) ELSE gc.text END,
                           CASE WHEN x.is_tie THEN greatest(gc.text, gr.text) ELSE gr.text END, x.is_tie, x.margin
                    FROM pairs x JOIN generations gc ON gc.id = x.chosen_id
                    JOIN generations gr ON gr.id = x.rejected_id ORDER BY ALL""",
    }
    return {name: store.con.execute(sql).fetchall() for name, sql in q.items()}


@pytest.mark.parametrize(("gz", "one_pass"), [(False, True), (False, False), (True, False)])
def test_fresh_chunked_import_equals_the_python_path(tmp_path, monkeypatch, gz, one_pass):
    """Into an empty dataset, a file naming each prompt once is committed chunk by chunk without the anti-joins
    and accounting joins (nothing can be stored yet): same rows, counts and accounting as the Python path, and
    a second import (the general path) finds every record already stored."""
    import gzip

    rows = [
        {"prompt": f"¿pregunta {i}? 问题 🙂", "responses": [f"sí {i} ✅", f"不 {i}", f"quizá {i} 🤔"], "ranks": r}
        for i, r in enumerate([[1, 2, 3], [3, 1, 2], [2, 2, 1]] * 4)
    ]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" + ("\n" if i == 4 else "") for i, r in enumerate(rows))
    src = tmp_path / ("r.jsonl.gz" if gz else "r.jsonl")
    src.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    monkeypatch.setattr(fastimport, "COMMIT_ROWS", 5)  # 12 records: chunks of 5, 5 and 2
    if not one_pass:  # each chunk read again from its own temporary file, as for a big file
        monkeypatch.setattr(fastimport, "ONE_PASS_BYTES", 0)
    general = []
    real_write = fastimport.write_staged
    monkeypatch.setattr(fastimport, "write_staged", lambda *a, **k: general.append(1) or real_write(*a, **k))
    reports, stored = {}, {}
    for engine in ("python", "duckdb"):
        store = Store.open(tmp_path / f"{engine}.duckdb")
        dry = import_file(store, src, fmt="ranked", dataset="d", engine=engine, dry_run=True)
        reports[engine] = import_file(store, src, fmt="ranked", dataset="d", engine=engine)
        assert dry.added == reports[engine].added and dry.accounting() == reports[engine].accounting()
        stored[engine] = content(store)
        assert broken(store) == dict.fromkeys(BROKEN, 0)
        general.clear()
        again = import_file(store, src, fmt="ranked", dataset="d", engine=engine)
        assert again.added.rankings == again.added.pairs == 0
        assert again.accounting()["already_stored"] == 12
        assert general == ([1, 1, 1] if engine == "duckdb" else [])  # a second import takes the general path
        store.close()
    assert reports["duckdb"].engine == "duckdb"
    assert reports["duckdb"].added == reports["python"].added
    assert reports["duckdb"].in_file == reports["python"].in_file
    assert reports["duckdb"].accounting() == reports["python"].accounting()
    assert reports["duckdb"].added.prompts == 12 and reports["duckdb"].added.generations == 36
    assert stored["duckdb"] == stored["python"]


def test_chunks_read_again_from_the_file_equal_the_python_path(tmp_path, monkeypatch):
    """A big file (here: any file) is checked in one streaming pass, then each chunk is read again from its own
    lines; with a prompt ranked twice (the general path, with its anti-joins) the rows and counts are those of
    the Python path."""
    monkeypatch.setattr(fastimport, "COMMIT_ROWS", 1)
    monkeypatch.setattr(fastimport, "ONE_PASS_BYTES", 0)
    src = write(tmp_path / "r.jsonl", ROWS)
    reports, stored = {}, {}
    for engine in ("python", "duckdb"):
        store = Store.open(tmp_path / f"{engine}.duckdb")
        reports[engine] = import_file(store, src, fmt="ranked", dataset="d", engine=engine)
        stored[engine] = content(store)
        store.close()
    assert reports["duckdb"].engine == "duckdb"
    assert reports["duckdb"].added == reports["python"].added
    assert reports["duckdb"].in_file == reports["python"].in_file == {**reports["python"].in_file, "prompts": 2}
    assert reports["duckdb"].accounting() == reports["python"].accounting()
    assert stored["duckdb"] == stored["python"]
