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
